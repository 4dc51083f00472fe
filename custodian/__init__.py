"""custodian: key custody for encrypted backups.

This package is the core. It never imports textual, rich or ``screens``; the
command line (:mod:`custodian.cli`) and the Textual app both call
:class:`custodian.service.Service`.
"""

__version__ = "0.1.0"
