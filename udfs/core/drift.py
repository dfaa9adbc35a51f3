"""Per-entity drift detection and detector health signals, in bounded memory.

The costliest failure of an adaptive detector is silence: its baselines and its threshold
follow a shifted distribution, and it stops alerting while the incident goes on. One
:class:`DriftMonitor` per entity watches the entity's raw metric values and its anomaly
score, compares a frozen *reference* with a sliding *current* window, and says when they
differ (``drift`` records: PSI, KS, Page-Hinkley) and when the detector looks blind
(``health`` records: ``silent_detector``, ``stale_model``). How the reference and the window
are sampled, the statistics, the records, the limits and the cost per series are described
in ``docs/drift.md``; the statistics are in :mod:`udfs.core.drift_stats`, the settings in
:mod:`udfs.core.drift_config`.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from typing import Any

from udfs.core.drift_config import DriftConfig
from udfs.core.drift_series import Series, blank_series, pack_series, unpack_series
from udfs.core.drift_stats import (
    PSI_EPSILON,
    PageHinkley,
    clamp32,
    ks_statistic,
    next_sample,
    psi,
    quantiles,
    sample_offset,
)
from udfs.core.packing import from_le_bytes, le_bytes

__all__ = [
    "PSI_EPSILON",
    "SCORE",
    "DriftConfig",
    "DriftMonitor",
    "ks_statistic",
    "psi",
    "quantiles",
]

#: Name of the anomaly-score series.
SCORE = "score"

_SNAPSHOT_VERSION = 1
_PSI = 1
_KS = 2
_STALE = 4


def _span(from_ts: int, to_ts: int, events: int) -> dict[str, int]:
    return {"from_ts": from_ts, "to_ts": to_ts, "events": events}


class DriftMonitor:
    """Drift and health monitor of one entity. See ``docs/drift.md``.

    Parameters
    ----------
    cfg
        The configuration.
    series
        Names of the series to watch: the entity's metric names, and :data:`SCORE` for the
        anomaly score (the only series with Page-Hinkley and the health checks). Fixed for
        the monitor's life; values of other names are ignored.

    Examples
    --------
    >>> cfg = DriftConfig(warmup_events=0, reference_events=200, window_events=100,
    ...                   check_every=20, ks_samples=50)
    >>> mon = DriftMonitor(cfg, ["cpu"])
    >>> records = []
    >>> for i in range(600):  # one event per second; +0.5 from t = 400 s
    ...     x = (i * 7919 % 1000) / 1000.0 + (0.5 if i >= 400 else 0.0)
    ...     records += mon.update(1_000 * i, {"cpu": x}, alerted=False)
    >>> for r in records:
    ...     print(r["statistic"], round(r["value"], 4), r["current"])
    psi 0.3051 {'from_ts': 340000, 'to_ts': 439000, 'events': 100}
    ks 0.36 {'from_ts': 360000, 'to_ts': 459000, 'events': 100}
    >>> records[0]["reference"], records[0]["action"]
    ({'from_ts': 0, 'to_ts': 199000, 'events': 200}, 'report')
    """

    __slots__ = (
        "cfg",
        "_series",
        "_score",
        "_ph",
        "_ph_state",
        "_since_refresh",
        "_since_alert",
        "_start_ts",
        "_last_alert_ts",
        "_score_drift_ts",
        "_silent_sent",
        "_b1",
        "_b2",
        "_b3",
        "_ref_stride",
        "_cur_stride",
        "_nsub",
        "_typecode",
        "_layout",
    )

    def __init__(self, cfg: DriftConfig, series: Sequence[str]) -> None:
        self.cfg = cfg
        self._derive()
        self._series = [blank_series(name, self._ref_stride) for name in sorted(set(series))]
        self._score = self._find(SCORE)
        self._ph = self._new_ph()
        # Page-Hinkley bookkeeping: [updates since reset, updates at the last detection (-1:
        # none), run start ts, ts and n of the increase change point, same for decrease].
        self._ph_state = [0, -1, 0, 0, 0, 0, 0]
        self._since_refresh = 0
        self._since_alert = 0
        self._start_ts: int | None = None
        self._last_alert_ts: int | None = None
        self._score_drift_ts: int | None = None
        self._silent_sent = False

    def _derive(self) -> None:
        cfg = self.cfg
        half = cfg.reference_events // 2
        self._b1 = cfg.warmup_events
        self._b2 = self._b1 + half
        self._b3 = self._b1 + cfg.reference_events
        self._ref_stride = half // cfg.ks_samples
        self._cur_stride = cfg.window_events // cfg.ks_samples
        self._nsub = cfg.window_events // cfg.check_every
        self._typecode = "B" if cfg.check_every < 256 else "H"
        self._layout = (
            cfg.warmup_events,
            cfg.reference_events,
            cfg.window_events,
            cfg.check_every,
            cfg.psi_bins,
            cfg.ks_samples,
        )

    @property
    def watched(self) -> list[str]:
        """The names of the watched series, sorted."""
        return [s.name for s in self._series]

    def _find(self, name: str) -> Series | None:
        for s in self._series:
            if s.name == name:
                return s
        return None

    def _new_ph(self) -> Any:
        cfg = self.cfg
        return PageHinkley(
            min_instances=cfg.page_hinkley_min_instances,
            delta=cfg.page_hinkley_delta,
            threshold=cfg.page_hinkley_threshold,
            alpha=cfg.page_hinkley_alpha,
        )

    @property
    def series(self) -> list[str]:
        """The watched series, sorted."""
        return [s.name for s in self._series]

    # -- updates ---------------------------------------------------------------------------

    def update(
        self, ts_ms: int, values: Mapping[str, float], alerted: bool
    ) -> list[dict[str, Any]]:
        """Take one event of the entity; return the drift and health records it triggers.

        Parameters
        ----------
        ts_ms
            The event's timestamp (epoch ms); only reported, never compared.
        values
            The watched series present in the event: raw metric values and, under
            :data:`SCORE`, the anomaly score. Missing or non-finite values are skipped;
            names not watched are ignored.
        alerted
            Whether the detector judged this event anomalous.

        Returns
        -------
        list of dict
            Drift and health records (usually none), see ``docs/drift.md``.
        """
        cfg = self.cfg
        if not cfg.enabled:
            return []
        out: list[dict[str, Any]] = []
        if cfg.refresh_events and self._since_refresh >= cfg.refresh_events:
            self.reset_reference()
        self._since_refresh += 1
        if self._start_ts is None:
            self._start_ts = ts_ms
        if alerted:
            self._since_alert = 0
            self._last_alert_ts = ts_ms
            self._silent_sent = False
        else:
            self._since_alert += 1
        score = self._score
        for s in self._series:
            x = values.get(s.name)
            if x is None or x - x != 0.0:  # missing, NaN or infinite
                continue
            self._push(s, ts_ms, x, out)
            if s is score and s.n > self._b1:
                self._page_hinkley(ts_ms, x, out)
        if (
            score is not None
            and not self._silent_sent
            and self._since_alert >= cfg.silent_after_events
            and self._score_in_drift(score)
        ):
            self._silent_sent = True
            out.append(self._silent_record(ts_ms))
        if cfg.action == "reset" and out and any(r["type"] == "drift" for r in out):
            self.reset_reference()
        return out

    def _score_in_drift(self, score: Series) -> bool:
        if score.flags & (_PSI | _KS):
            return True
        seen, last = self._ph_state[0], self._ph_state[1]
        # A Page-Hinkley rise counts while recent and when no alert came after it (a rise the
        # detector alerted on is an incident it saw, not a blind detector).
        return last >= 0 and seen - last <= self.cfg.window_events and seen - last < self._since_alert

    def reset_reference(self) -> None:
        """Forget the reference and the current windows; rebuild them from the next values.

        Page-Hinkley restarts, drift and stale states are cleared (a drift that goes on is
        reported again once the new reference is complete). The alert history (events since
        the last alert) is kept: it is a fact about the detector, not about the reference.
        """
        self._series = [blank_series(s.name, self._ref_stride) for s in self._series]
        self._score = self._find(SCORE)
        self._ph = self._new_ph()
        self._ph_state = [0, -1, 0, 0, 0, 0, 0]
        self._since_refresh = 0
        self._score_drift_ts = None
        self._silent_sent = False

    def _push(self, s: Series, ts: int, x: float, out: list[dict[str, Any]]) -> None:
        i = s.n
        s.n = i + 1
        j = i - self._b3
        if j >= 0:  # monitoring: the current window
            cfg = self.cfg
            ce = cfg.check_every
            r = j % ce
            if r == 0:
                self._open_subwindow(s, j, ts)
            b = bisect_right(s.edges, x)
            s.ring[s.base + b] += 1
            s.sums[b] += 1
            if j == s.next_sample:
                stride = self._cur_stride
                block = j // stride
                s.cur_sample[block % cfg.ks_samples] = clamp32(x)
                block += 1
                s.next_sample = block * stride + sample_offset(block, stride)
            if r == ce - 1 and j >= cfg.window_events - 1:
                self._compare(s, ts, out)
            return
        k = i - self._b1
        if k < 0:  # warm-up
            return
        if i < self._b2:  # first half of the reference: the sample
            if k == 0:
                s.ref_from_ts = ts
            if k == s.next_sample:
                s.building.append(clamp32(x))
                s.next_sample = next_sample(k + 1, self._ref_stride)
            if i == self._b2 - 1:
                frozen = array("f", sorted(s.building))
                s.sample = le_bytes(frozen)
                s.building = array("f")
                bins = self.cfg.psi_bins
                s.edges = tuple(quantiles(frozen, [q / bins for q in range(1, bins)]))
                s.ref_counts = [0] * bins
            return
        s.ref_counts[bisect_right(s.edges, x)] += 1  # second half: the bin counts
        if i == self._b3 - 1:
            cfg = self.cfg
            s.ref_to_ts = ts
            s.ring = array(self._typecode, [0]) * (self._nsub * cfg.psi_bins)
            s.ring_ts = [0] * self._nsub
            s.sums = [0] * cfg.psi_bins
            s.cur_sample = array("f", [0.0]) * cfg.ks_samples
            s.next_sample = sample_offset(0, self._cur_stride)

    def _open_subwindow(self, s: Series, j: int, ts: int) -> None:
        bins = self.cfg.psi_bins
        slot = (j // self.cfg.check_every) % self._nsub
        base = slot * bins
        ring = s.ring
        sums = s.sums
        for b in range(bins):
            c = ring[base + b]
            if c:
                sums[b] -= c
                ring[base + b] = 0
        s.ring_ts[slot] = ts
        s.base = base

    def _compare(self, s: Series, ts: int, out: list[dict[str, Any]]) -> None:
        """The check at the end of a sub-window: the ring holds exactly the last W values."""
        cfg = self.cfg
        current = sorted(s.cur_sample)
        psi_value = psi(s.ref_counts, s.sums)
        ks_value = ks_statistic(from_le_bytes("f", s.sample), current)
        oldest = (s.base // cfg.psi_bins + 1) % self._nsub
        ref = _span(s.ref_from_ts, s.ref_to_ts, cfg.reference_events)
        cur = _span(s.ring_ts[oldest], ts, cfg.window_events)
        for flag, statistic, value, threshold in (
            (_PSI, "psi", psi_value, cfg.psi_threshold),
            (_KS, "ks", ks_value, cfg.ks_threshold),
        ):
            if s.flags & flag:
                if value < cfg.clear_ratio * threshold:
                    s.flags &= ~flag
            elif value > threshold:
                s.flags |= flag
                out.append(self._drift_record(s.name, statistic, value, threshold, ref, cur))
                if s is self._score:
                    self._score_drift_ts = ts
        if s is not self._score:
            return
        iqr_lo, iqr_hi = quantiles(current, (0.25, 0.75))
        spread = iqr_hi - iqr_lo
        if s.flags & _STALE:
            if spread >= cfg.stale_spread:
                s.flags &= ~_STALE
        elif spread < cfg.stale_spread:
            s.flags |= _STALE
            out.append(
                {
                    "type": "health",
                    "check": "stale_model",
                    "feature": s.name,
                    "value": spread,
                    "threshold": cfg.stale_spread,
                    "reference": ref,
                    "current": cur,
                }
            )

    def _page_hinkley(self, ts: int, x: float, out: list[dict[str, Any]]) -> None:
        ph = self._ph
        st = self._ph_state
        ph.update(x)
        st[0] += 1
        n = ph._x_mean.n
        if n == 1:
            st[2] = ts
        if ph._sum_increase == ph._min_increase:
            st[3] = ts
            st[4] = int(n)
        if ph._sum_decrease == ph._max_decrease:
            st[5] = ts
            st[6] = int(n)
        if not ph._drift_detected:
            return
        up = ph._sum_increase - ph._min_increase
        down = ph._max_decrease - ph._sum_decrease
        if self.cfg.page_hinkley_direction == "up" and up <= self.cfg.page_hinkley_threshold:
            return  # the score fell: the models fit better, nothing to read (it restarts)
        last = st[1]
        st[1] = st[0]
        if last >= 0 and st[0] - last <= self.cfg.window_events:
            return  # the same drift, still going on
        self._score_drift_ts = ts
        cp_ts, cp_n = (st[3], st[4]) if up >= down else (st[5], st[6])
        out.append(
            self._drift_record(
                SCORE,
                "page_hinkley",
                float(max(up, down)),
                self.cfg.page_hinkley_threshold,
                _span(st[2], cp_ts, cp_n),
                _span(cp_ts, ts, int(n) - cp_n),
            )
        )

    def _drift_record(
        self,
        feature: str,
        statistic: str,
        value: float,
        threshold: float,
        reference: dict[str, int],
        current: dict[str, int],
    ) -> dict[str, Any]:
        return {
            "type": "drift",
            "feature": feature,
            "statistic": statistic,
            "value": value,
            "threshold": threshold,
            "reference": reference,
            "current": current,
            "action": self.cfg.action,
        }

    def _silent_record(self, ts: int) -> dict[str, Any]:
        last = self._last_alert_ts
        since = last if last is not None else self._start_ts
        return {
            "type": "health",
            "check": "silent_detector",
            "feature": SCORE,
            "value": self._since_alert,
            "threshold": self.cfg.silent_after_events,
            "events_since_alert": self._since_alert,
            "last_alert_ts": last,
            "score_drift_ts": self._score_drift_ts,
            "current": _span(since if since is not None else ts, ts, self._since_alert),
        }

    # -- inspection (tests, operators) -----------------------------------------------------

    def _get(self, name: str) -> Series:
        s = self._find(name)
        if s is None:
            raise KeyError(f"series {name!r} is not watched (series: {self.series})")
        return s

    def is_monitoring(self, name: str) -> bool:
        """Whether the series' reference is frozen and its current window has filled."""
        return self._get(name).n - self._b3 >= self.cfg.window_events

    def reference_sample(self, name: str) -> list[float]:
        """The reference sample: frozen and sorted, or in arrival order while it grows."""
        s = self._get(name)
        if s.sample:
            return [float(v) for v in from_le_bytes("f", s.sample)]
        return list(s.building)

    def bin_edges(self, name: str) -> tuple[float, ...]:
        """The PSI bin edges (empty until the first half of the reference is complete)."""
        return self._get(name).edges

    def reference_counts(self, name: str) -> list[int]:
        """Reference values per PSI bin."""
        return list(self._get(name).ref_counts)

    def current_counts(self, name: str) -> list[int]:
        """Values per PSI bin in the sub-window ring (exactly the last W right after a check)."""
        return list(self._get(name).sums)

    def current_sample(self, name: str) -> list[float]:
        """The current KS sample, oldest first (one per block of the last W right after a check)."""
        s = self._get(name)
        k = self.cfg.ks_samples
        stride = self._cur_stride
        j = s.n - self._b3  # values in the current window so far
        if j <= 0:
            return []
        last = (j - 1) // stride  # the newest block whose sample has been taken
        if last * stride + sample_offset(last, stride) >= j:
            last -= 1
        return [s.cur_sample[b % k] for b in range(max(last - k + 1, 0), last + 1)]

    def statistics(self, name: str) -> tuple[float, float]:
        """``(psi, ks)`` of the series now: the values checked, right after a check."""
        s = self._get(name)
        if not s.sums:
            raise ValueError(f"series {name!r}: the reference is not frozen yet")
        current = sorted(self.current_sample(name))
        return psi(s.ref_counts, s.sums), ks_statistic(self.reference_sample(name), current)

    # -- state -----------------------------------------------------------------------------

    def snapshot(self) -> tuple[Any, ...]:
        """The monitor's state as plain data (tuples, ints, floats, str, bytes, None).

        Returns
        -------
        tuple
            ``(version, layout, series, health, page_hinkley)``; pass it to :meth:`restore`.
        """
        ph = self._ph
        mean = ph._x_mean
        series = tuple(pack_series(s) for s in self._series)
        return (
            _SNAPSHOT_VERSION,
            self._layout,
            series,
            (
                self._since_refresh,
                self._since_alert,
                self._start_ts,
                self._last_alert_ts,
                self._score_drift_ts,
                self._silent_sent,
            ),
            (
                mean.n,
                mean._mean,
                ph._sum_increase,
                ph._sum_decrease,
                ph._min_increase,
                ph._max_decrease,
                ph._drift_detected,
                *self._ph_state,
            ),
        )

    @classmethod
    def restore(cls, cfg: DriftConfig, snap: tuple[Any, ...]) -> DriftMonitor:
        """Rebuild a monitor from :meth:`snapshot` output (after a pickle round trip too).

        The restored monitor continues exactly like the snapshotted one.

        Raises
        ------
        ValueError
            If the snapshot's version, or the layout it was taken with (``warmup_events,
            reference_events, window_events, check_every, psi_bins, ks_samples``), differ
            from ``cfg``'s: start a fresh monitor then.
        """
        self = cls.__new__(cls)
        self.cfg = cfg
        self._derive()
        if len(snap) != 5 or snap[0] != _SNAPSHOT_VERSION:
            raise ValueError(f"drift snapshot: unsupported version/shape {snap[:1]!r}")
        if tuple(snap[1]) != self._layout:
            raise ValueError(
                f"drift snapshot layout {tuple(snap[1])!r} does not match the config "
                f"{self._layout!r} (warmup_events, reference_events, window_events, "
                "check_every, psi_bins, ks_samples)"
            )
        _, _, series, health, ph_snap = snap
        self._series = [
            unpack_series(
                data,
                typecode=self._typecode,
                bounds=(self._b1, self._b2, self._b3),
                strides=(self._ref_stride, self._cur_stride),
                sub_windows=(cfg.check_every, self._nsub, cfg.psi_bins),
            )
            for data in series
        ]
        self._score = self._find(SCORE)
        (
            self._since_refresh,
            self._since_alert,
            self._start_ts,
            self._last_alert_ts,
            self._score_drift_ts,
            self._silent_sent,
        ) = health
        ph = self._new_ph()
        mean = ph._x_mean
        (
            mean.n,
            mean._mean,
            ph._sum_increase,
            ph._sum_decrease,
            ph._min_increase,
            ph._max_decrease,
            ph._drift_detected,
        ) = ph_snap[:7]
        self._ph = ph
        self._ph_state = list(ph_snap[7:])
        return self
