"""Names inside text: isolated, so that their bidirectional controls stay inside them.

Names come from anyone who enqueues (queues, tasks, steps) and may hold bidirectional
controls: a queue named ``q\u202eevil`` would turn the rest of a sentence about it right
to left. So a name is isolated wherever it stands inside other text: ``<bdi>`` in
templates; in messages made in Python (flash messages, error pages, a timeline's titles,
a chart's caption) :func:`isolate` marks it, and the ``said`` filter (:func:`said`) shows
the marked name in a ``<bdi>``, so that the text a user copies holds no invisible mark.
"""

from __future__ import annotations

import re

from markupsafe import Markup, escape

#: First strong isolate and pop directional isolate: the marks of :func:`isolate`.
FSI, PDI = "\u2068", "\u2069"
#: The isolate controls (LRI, RLI, FSI, PDI), taken out of a name before it is marked.
_ISOLATES = re.compile("[\u2066-\u2069]")
#: The longest name a message shows whole (queue names have at most 200 characters): a
#: flash message travels in a cookie, which a browser drops past 4 KiB.
LONGEST = 200


def isolate(name: object) -> str:
    """``name`` marked for a message: shown in a ``<bdi>`` by :func:`said`, so that its
    bidirectional controls stay inside it; cut past LONGEST characters."""
    text = _ISOLATES.sub("", str(name))
    if len(text) > LONGEST:
        text = text[:LONGEST] + "…"
    return FSI + text + PDI


def said(message: str) -> Markup:
    """A message, escaped, with the names :func:`isolate` marked in ``<bdi>``."""
    return Markup(str(escape(message)).replace(FSI, "<bdi>").replace(PDI, "</bdi>"))
