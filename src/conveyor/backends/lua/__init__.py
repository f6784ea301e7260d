"""The Redis backend's Lua scripts (see conveyor.backends.redis_scripts)."""
