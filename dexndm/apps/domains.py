"""``dexndm domains [NAME_OR_PATH]``: list the domain presets, or print one fully resolved."""

from __future__ import annotations

import sys

import yaml

from dexndm.sim.domain import DomainError, available_domains, load_domain


def main() -> int:
    args = sys.argv[1:]
    if not args:
        for name in available_domains():
            print(f"{name:<16} {load_domain(name).description}")
        return 0
    try:
        domain = load_domain(args[0])
    except DomainError as exc:
        print(f"dexndm domains: {exc}", file=sys.stderr)
        return 2
    print(yaml.safe_dump(domain.to_dict(), sort_keys=False))
    return 0
