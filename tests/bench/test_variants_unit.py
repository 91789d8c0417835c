"""bench/variants.py stops when a part it takes out no longer exists, instead of pricing nothing."""
from __future__ import annotations

import pytest

from bench import variants
from receiver import intake
from receiver.providers import xportcn

pytestmark = pytest.mark.unit


def test_a_variant_whose_target_was_renamed_stops_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(intake, "store_push")
    with pytest.raises(SystemExit, match=r"receiver\.intake\.store_push is gone"):
        variants.build("no-store")


@pytest.mark.parametrize(("owner", "name"), [(intake, "store_push"), (xportcn.XportcnFamily, "parse_push")])
def test_the_parts_the_variants_take_out_exist(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> None:
    monkeypatch.setattr(owner, name, getattr(owner, name))  # put back after the test
    variants._replace(owner, name, variants._no_store)
    assert getattr(owner, name) is variants._no_store
