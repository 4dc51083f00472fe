"""The Textual front end of custodian. It calls only :class:`custodian.service.Service`."""
