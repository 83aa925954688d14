"""The clerk daemon: watch roots, settle, reconcile, apply rules, report to systemd.

`service.Daemon` is the lifecycle; `watch` feeds it events (inotify, or watchdog's polling),
`settle` decides when a path is complete, `reconcile` compares roots with the catalog,
`notify` speaks the sd_notify protocol, `control` serves the control socket.
All rule processing and every store write happen on the daemon's one worker thread.
"""
