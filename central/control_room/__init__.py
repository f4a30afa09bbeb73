"""The control room in the browser (issue 16): ``nii control-room serve``.

A web application (Starlette under uvicorn) that reads the CIR through its store
interface and follows every aggregator's live feed. Officers watch scans fill in
line by line, look at the ATR's findings on the material-coloured image, and
decide: Green (release), Yellow (assessment review) or Red (a Physical
Examination Mandate citing the marked region). Accounts, roles and sites bound
to them are checked on the server for every request; every view of an image and
every decision goes to an append-only audit log.

Parts:

* :mod:`central.control_room._config`: the ``control-room.toml`` file (listen
  address, the central configuration whose CIR it reads, the feeds, the sites).
* :mod:`central.control_room._accounts`: users, roles, sessions, the audit log.
* :mod:`central.control_room._images`: scans as calibrated, material-coloured
  strips, read incrementally as blocks are committed.
* :mod:`central.control_room._app`: the HTTP application.
"""
