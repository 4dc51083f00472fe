"""Custody version 2: dual control as a property of the keys (docs/custody.md).

Pure building blocks, no UI and no service wiring: the GF(256) field and
Shamir sharing (:mod:`.gf256`), personal keys under one passphrase
(:mod:`.personal`), quorum-wrapped DEKs, releases and refresh (:mod:`.quorum`),
and the SLIP-39 break-glass set (:mod:`.breakglass`).
"""
