"""Run acme while writing down the secrets it handles, for the leak scan in tests.

Assay plants a random key and random tokens and deletes its registry of them
when the run ends, so a test cannot read them afterwards. This wrapper is the
app command in those tests: it appends the key from the environment and every
value acme seals to the file named by ``ASSAY_TEST_RECORD``, then runs acme.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.getcwd())

RECORD = os.environ["ASSAY_TEST_RECORD"]


def record(kind: str, value: str) -> None:
    with open(RECORD, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"kind": kind, "value": value}) + "\n")


def main() -> int:
    record("key", os.environ.get("ACME_TOKEN_KEY", ""))

    import acme.vault
    from acme.__main__ import main as acme_main

    original = acme.vault.Vault.seal

    def seal(self: acme.vault.Vault, plaintext: str) -> str:
        record("sealed", plaintext)
        return original(self, plaintext)

    acme.vault.Vault.seal = seal  # type: ignore[method-assign]
    return acme_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
