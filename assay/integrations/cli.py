"""`assay upload vanta DIR`: push a verified evidence folder to Vanta.

Exit status: 0 uploaded (or printed, with --dry-run), 1 the folder does not
verify or Vanta rejected a call, 2 bad configuration or usage.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from assay.cli import EXIT_OK, command
from assay.config import find_config, load_config

__all__: list[str] = []


def upload_vanta_command(args: argparse.Namespace) -> int:
    from assay.evidence_cli import public_key_for, read_evidence, warn
    from assay.integrations.vanta import upload
    from assay.manifest import verify_folder

    config = load_config(Path(args.config) if args.config else find_config())
    folder = Path(args.folder)
    evidence = read_evidence(folder)

    # Never upload evidence that was edited after the run signed it.
    key, origin = public_key_for(args, config)
    result = verify_folder(folder, key, key_origin=origin)
    for warning in result.warnings:
        warn(warning)

    sent = upload(folder, evidence, config, dry_run=args.dry_run)
    if args.dry_run:
        print("dry run: nothing was sent")
    else:
        print(f"uploaded to Vanta: {'; '.join(sent)}")
    return EXIT_OK


@command("upload")
def _add_upload(parser: argparse.ArgumentParser) -> None:
    """push an evidence folder to a GRC platform"""
    targets = parser.add_subparsers(dest="target", metavar="TARGET", required=True)
    vanta = targets.add_parser(
        "vanta", help="upload documents and control results to Vanta"
    )
    vanta.add_argument("folder", metavar="DIR", help="evidence folder of a run")
    vanta.add_argument(
        "--dry-run",
        action="store_true",
        help="print each request, secrets redacted, and send nothing",
    )
    vanta.add_argument(
        "--public-key",
        metavar="K",
        help="PEM public key to verify the folder with (default as for verify)",
    )
    vanta.add_argument("--config", help="path of assay.yaml (default: ./assay.yaml)")
    vanta.set_defaults(handler=upload_vanta_command)
