"""Interim reports are bounded: a floor on the interval and a cap on how many a blast makes.

Before, ``blast --interval 1e-9`` sent a slice (and kept a report) per nanosecond of the run:
a long run that grew to gigabytes (issue 11, section 2).
"""
from __future__ import annotations

import pytest

from udpbench import cli
from udpbench.errors import UserError
from udpbench.measure.blast import blast
from udpbench.transport.server import Server


@pytest.fixture
def short_server():
    # the server grants at most 1 s: a regression runs briefly instead of for the asked duration
    with Server("127.0.0.1", 0, max_duration=1.0) as server:
        yield server


@pytest.mark.parametrize("interval", [1e-9, 1e-6, 0.01, 0.0999])
def test_an_interval_below_the_floor_is_refused_before_sending(short_server, interval):
    with pytest.raises(UserError, match=r"below the 0.1 s floor"):
        blast("127.0.0.1", port=short_server.port, size=200, duration=0.3, rate=1e6, interval=interval)


def test_too_many_intervals_are_refused_naming_the_smallest_interval_that_fits(short_server):
    with pytest.raises(UserError, match=r"more than 10000 interim reports: make the interval at least 0.2 s"):
        blast("127.0.0.1", port=short_server.port, size=200, duration=2000.0, rate=1e6, interval=0.1)


def test_the_floor_itself_is_accepted(short_server):
    row = blast("127.0.0.1", port=short_server.port, size=200, duration=0.3, rate=1e6, interval=0.1)
    assert len(row.intervals) == 3


@pytest.mark.parametrize("args, words", [
    (["--interval", "1e-9"], "--interval 1e-09 is below the floor of 0.1 s"),
    (["--interval", "1e-6", "--duration", "1"], "--interval 1e-06 is below the floor of 0.1 s"),
    (["--interval", "0.1", "--duration", "1001"], "raise --interval to at least 0.1001"),
])
def test_the_command_line_names_the_flag_in_one_line(short_server, capsys, args, words):
    code = cli.main(["blast", "127.0.0.1", "--port", str(short_server.port), "--size", "200",
                     "--rate", "1M", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err and words in err, err
