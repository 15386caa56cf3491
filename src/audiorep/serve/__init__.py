"""``audiorep serve``: a local web tool for SpecVQGAN sampling and the codec round trip.

A small standard-library HTTP server (:mod:`audiorep.serve.server`: JSON API and Server-Sent
Events) in front of :class:`audiorep.serve.app.App` (uploads, codec round trip, sampling jobs,
judge predictions, result files) and a plain-JavaScript page (``static/``). The models are
reached through one adapter, :mod:`audiorep.serve.backend`; background runs, their events and
cancel are :mod:`audiorep.serve.jobs`; PNGs are drawn by :mod:`audiorep.serve.images`.

Layer (docs/architecture.md): above ``specvqgan``, below ``cli``.
"""

from audiorep.serve.app import App, ServeConfig
from audiorep.serve.server import make_server, serve_in_thread, stop

__all__ = ["App", "ServeConfig", "make_server", "serve_in_thread", "stop"]
