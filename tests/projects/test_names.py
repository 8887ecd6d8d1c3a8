"""What a project name may be."""

from __future__ import annotations

import pytest

from mailroom.projects.names import check_name


@pytest.mark.parametrize("name", ["default", "billing", "app-2", "a", "0", "x_y", "a" * 64])
def test_slugs_are_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "-lead", "_lead", "has space", "dot.ted", "../x", "a" * 65, "é", "a\nb", "a/b"]
)
def test_anything_else_is_refused_with_the_rules(name: str) -> None:
    with pytest.raises(ValueError, match="1 to 64 characters"):
        check_name(name)


def test_upper_case_is_refused_with_the_name_to_use() -> None:
    with pytest.raises(ValueError, match="use 'billing'"):
        check_name("Billing")
