"""The choice of requests in flight (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pos3._concurrency import (
    IN_FLIGHT_MEMORY,
    MAX_IN_FLIGHT,
    MIN_IN_FLIGHT,
    connection_pool_size,
    requests_in_flight,
)

KIB, MIB = 1 << 10, 1 << 20


def test_many_small_objects_get_many_requests_in_flight() -> None:
    assert requests_in_flight([16 * KIB] * 2000) == MAX_IN_FLIGHT


def test_larger_objects_get_fewer() -> None:
    assert requests_in_flight([MIB] * 200) == IN_FLIGHT_MEMORY // MIB
    assert requests_in_flight([16 * MIB] * 10) == MIN_IN_FLIGHT


def test_a_few_large_objects_among_small_ones_set_the_memory_bound() -> None:
    sizes = [KIB] * 80 + [4 * MIB] * 20  # the 90th percentile is a 4 MiB object
    assert requests_in_flight(sizes) == IN_FLIGHT_MEMORY // (4 * MIB)


def test_an_explicit_value_wins() -> None:
    assert requests_in_flight([KIB] * 100, explicit=3) == 3
    assert requests_in_flight([64 * MIB], explicit=300) == 300
    assert connection_pool_size(10) == 20


def test_nothing_to_transfer() -> None:
    assert requests_in_flight([]) == MIN_IN_FLIGHT


@given(st.lists(st.integers(min_value=0, max_value=1 << 34), max_size=200))
def test_bounded_and_memory_capped(sizes: list[int]) -> None:
    n = requests_in_flight(sizes)
    assert MIN_IN_FLIGHT <= n <= MAX_IN_FLIGHT
    assert connection_pool_size(None) >= MAX_IN_FLIGHT
