"""The dashboard: queues, jobs, failed jobs, workers and stats in a browser, at ``/dashboard``.

Server-rendered HTML (Jinja2 templates in ``templates/``), a little CSS and JavaScript of
its own in ``static/`` (no third-party code, no build step), for admin keys only. Modules,
one job each:

* :mod:`.app`: the ASGI application, its routes and error pages;
* :mod:`.pages`: the pages (GET); :mod:`.actions`: the actions (POST);
* :mod:`.login`, :mod:`.session`, :mod:`.signing`, :mod:`.csrf`: who may, and proof of it;
* :mod:`.views`: what pages read from the store; :mod:`.jobview`: one job, shown;
  :mod:`.redact`: the secrets never shown; :mod:`.chart`: the overview's SVG charts;
* :mod:`.render`: templates, filters, flash messages; :mod:`.bidi`: names isolated in text;
  :mod:`.forms`: reading forms.

docs/dashboard.md is the user's guide.
"""

from conveyor.web.dashboard.app import create_dashboard

__all__ = ["create_dashboard"]
