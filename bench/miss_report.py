"""What misses issue 11's goals in an eval_pixels run: collisions, quarantines, sex misses, donor tiers.

Reads what ``eval_pixels.py --trace --out DIR`` leaves behind, runs nothing:

    python bench/miss_report.py --out DIR --trace DIR.err [--faces ../shared/data/faces]

DIR/outputs.npz (each output's identity, descriptor, verification), DIR/originals.npz (the originals'
descriptors, ids in the order eval_pixels folds them), DIR/bank_fold{0,1}.npz (the donor banks) and the
trace (stderr of --trace: per group the verification reasons and, per donor set, its tier and rungs).
Tiers are surrogate_donors.TIERS indices: 0-4 = same sex within 8-45° ITA, 5 = same sex, any tone; 6 = any
sex; a tier is taken when at least k_min (6) donors pass it. The tier-5 pool is the bank identities of the
patient's self-reported sex at least 0.55 from the patient's originals, and the patient's tone is the one
the other fold's bank measured (every identity is a donor there): the engine reads sex, tone and distance
on its own crops, so both are estimates of what it saw.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import face_quality as fq  # noqa: E402
from merge_runs import gallery  # noqa: E402

from anonymizer.engines.surrogate_settings import SurrogateSettings  # noqa: E402

SAME_PERSON = fq.SAME_PERSON
TIER5_DISTANCE = 0.55  # surrogate_donors.TIERS[5]'s identity floor
K = SurrogateSettings().k  # donors per set: a tier-5 pool this small is mixed whole
TONES = (8.0, 12.0, 18.0, 28.0, 45.0)  # surrogate_donors.TIERS 0-4's skin-tone tolerances (ITA°)
FACES = REPO.parent / "shared" / "data" / "faces"
HEADER = re.compile(r"^# trace (\S+) (\S+) (.*)$")
RUNG = re.compile(r"^#\s+set (\d+) tier (\d+) rung (\d+) away ([\d.]+) closer (\d+) donor (\S+)$")


@dataclass
class Group:
    """One patient under one setting, as the trace tells it."""

    checks: list[tuple[str, float]] = field(default_factory=list)  # per photo: (reason or "ok", distance)
    rungs: dict[int, list[tuple[int, int, float, int, str]]] = field(default_factory=dict)  # set → rungs

    @property
    def tiers(self) -> set[int]:
        return {r[0] for rungs in self.rungs.values() for r in rungs}

    def tier(self) -> str:
        return "/".join(map(str, sorted(self.tiers))) or "-"


def parse_trace(lines: list[str]) -> dict[tuple[str, str], Group]:
    """(setting, identity) → Group from eval_pixels' --trace lines (other lines are skipped)."""
    groups: dict[tuple[str, str], Group] = {}
    current: Group | None = None
    for line in lines:
        line = line.rstrip("\n")
        if head := HEADER.match(line):
            current = groups.setdefault((head[1], head[2]), Group())
            for check in head[3].split():
                reason, _, value = check.rpartition(":")
                current.checks.append((reason, float(value)) if reason else (check, float("nan")))
        elif (rung := RUNG.match(line)) and current is not None:
            n, tier, level, away, closer, donors = rung.groups()
            entry = (int(tier), int(level), float(away), int(closer), donors)
            current.rungs.setdefault(int(n), []).append(entry)
    return groups


def bank_folds(ids: list[str]) -> dict[str, int]:
    """identity → the fold bank it draws from (eval_pixels: bank f = folds[f][0], tested on folds[f][1])."""
    return {**{i: 1 for i in ids[0::2]}, **{i: 0 for i in ids[1::2]}}


def pair_collisions(ids: np.ndarray, descs: np.ndarray) -> dict[tuple[str, str], list[float]]:
    """(a, b) with a < b → distances of their output photos' pairs under SAME_PERSON."""
    out: dict[tuple[str, str], list[float]] = defaultdict(list)
    for i, j in combinations(range(len(ids)), 2):
        if ids[i] == ids[j]:
            continue
        d = float(np.linalg.norm(descs[i] - descs[j]))
        if d < SAME_PERSON:
            out[tuple(sorted((str(ids[i]), str(ids[j]))))].append(d)  # type: ignore[index]
    return dict(out)


def tier5_pool(patient: list[np.ndarray], sex: str, bank: dict[str, np.ndarray]) -> set[str]:
    """Bank identities of ``sex`` at least TIER5_DISTANCE from every photo of the patient."""
    pool = set()
    for identity, values in bank.items():
        descs, donor_sex = values[:2]
        if donor_sex != sex:
            continue
        if min(float(np.linalg.norm(d - p)) for d in descs for p in patient) >= TIER5_DISTANCE:
            pool.add(identity)
    return pool


def load_bank(path: Path) -> dict[str, tuple[np.ndarray, str, float]]:
    """identity → (its photos' descriptors, sex, mean skin tone in ITA°)."""
    from anonymizer.donors import ita_degrees

    with np.load(path) as z:
        ids, descs, sexes, labs = z["identity"], z["descriptors"], z["sex"], z["skin_lab"]
    return {
        str(i): (
            descs[ids == i],
            str(sexes[ids == i][0]),
            float(np.mean([ita_degrees(x) for x in labs[ids == i]])),
        )
        for i in sorted(set(ids))
    }


def tone_near(ita: float, sex: str, bank: dict[str, tuple[np.ndarray, str, float]]) -> list[int]:
    """Same-sex bank identities within each tier's tone tolerance (TIERS 0-4, identity floor ignored)."""
    same = [v[2] for v in bank.values() if v[1] == sex]
    return [sum(abs(t - ita) <= tol for t in same) for tol in TONES]


def read_sexes(faces: Path, ids: list[str]) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """identity → self-reported sex ("F", "M" or ""), read as eval_pixels reads it, and the manifest."""
    import eval_pixels as ev  # torch and the engine: only when the report runs

    manifest = ev.read_manifest(faces)
    return {i: ev.self_reported_sex(manifest.get(i, {})) for i in ids}, manifest


class Report:
    def __init__(self, out: Path, trace: Path, faces: Path) -> None:
        self.originals = gallery(out / "originals.npz")
        self.ids = list(self.originals)  # in eval_pixels' order, which bank_folds reads
        with np.load(out / "outputs.npz") as z:
            self.outputs = {k: z[k] for k in z.files}
        self.settings = [k[: -len("_ids")] for k in self.outputs if k.endswith("_ids")]
        self.groups = parse_trace(trace.read_text().splitlines())
        self.banks = [load_bank(out / f"bank_fold{f}.npz") for f in (0, 1)]
        self.fold = bank_folds(self.ids)
        self.sex, manifest = read_sexes(faces, self.ids)
        self.eth = {i: manifest.get(i, {}).get("ethnicity_self_reported", "?") for i in self.ids}
        samples = [
            fq.Sample(i, d, np.zeros(1), False, self.sex[i], float("nan"))
            for i in self.ids
            for d in self.originals[i]
        ]
        self.probes = fq.Probes(samples)

    def who(self, identity: str) -> str:
        return f"{identity} {self.sex[identity] or '?'} {self.eth[identity]} b{self.fold[identity]}"

    def tier(self, setting: str, identity: str) -> str:
        group = self.groups.get((setting, identity))
        return group.tier() if group else "-"

    def one_pool(self, setting: str, a: str, b: str) -> bool:
        """Whether both patients mix (nearly) the same donors: one bank, one sex, tier 5, a pool of ≤ K."""
        alike = self.fold[a] == self.fold[b] and self.sex[a] == self.sex[b]
        tier5 = self.tier(setting, a) == self.tier(setting, b) == "5"
        return alike and tier5 and max(len(self.pool(a)), len(self.pool(b))) <= K

    def originals_distance(self, a: str, b: str) -> float:
        return min(float(np.linalg.norm(x - y)) for x in self.originals[a] for y in self.originals[b])

    def pool(self, identity: str) -> set[str]:
        return tier5_pool(self.originals[identity], self.sex[identity], self.banks[self.fold[identity]])

    def collisions(self) -> None:
        print("\n## 1. collisions: patient pairs with output photos < 0.6 apart")
        print(
            "| setting | pair | photo pairs < 0.6 | min dist | a (id sex eth bank) | b | same bank "
            "| tiers a / b | originals' min dist | tier-5 pools a / b / shared |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        summary = []
        for s in self.settings:
            pairs = pair_collisions(self.outputs[f"{s}_ids"], self.outputs[f"{s}_desc"])
            photos = sum(len(v) for v in pairs.values())
            same_bank = same_sex = one_pool = 0
            for (a, b), dists in sorted(pairs.items(), key=lambda kv: min(kv[1])):
                shared = self.fold[a] == self.fold[b]
                same_bank += len(dists) * shared
                same_sex += len(dists) * (self.sex[a] == self.sex[b])
                one_pool += len(dists) * self.one_pool(s, a, b)
                pa, pb = self.pool(a), self.pool(b)
                pools = f"{len(pa)} / {len(pb)} / {len(pa & pb)}" if shared else f"{len(pa)} / {len(pb)} / -"
                print(
                    f"| {s} | {a}-{b} | {len(dists)} | {min(dists):.3f} | {self.who(a)} | {self.who(b)} | "
                    f"{'yes' if shared else 'no'} | {self.tier(s, a)} / {self.tier(s, b)} | "
                    f"{self.originals_distance(a, b):.3f} | {pools} |"
                )
            n = len(self.outputs[f"{s}_ids"])
            total = n * (n - 1) // 2 - n // 2
            summary.append((s, photos, total, same_bank, same_sex, one_pool, len(pairs)))
        print(f"\none pool: same bank and sex, both on tier 5, tier-5 pools of at most k = {K} (mixed whole)")
        print("| setting | photo pairs < 0.6 | of | rate | same bank | same sex | one pool | patient pairs |")
        print("|---|---|---|---|---|---|---|---|")
        for s, photos, total, bank, sex, pool, patients in summary:
            print(
                f"| {s} | {photos} | {total} | {100 * photos / total:.1f}% | {bank} | {sex} | {pool} | "
                f"{patients} |"
            )
        self.baseline()

    def baseline(self) -> None:
        """What share of all cross-patient pairs share a bank / a sex (what chance alone gives)."""
        tested = sorted({str(i) for s in self.settings for i in self.outputs[f"{s}_ids"]})
        pairs = list(combinations(tested, 2))
        bank = sum(self.fold[a] == self.fold[b] for a, b in pairs)
        sex = sum(self.sex[a] == self.sex[b] for a, b in pairs)
        both = sum(self.fold[a] == self.fold[b] and self.sex[a] == self.sex[b] for a, b in pairs)
        near = sum(self.originals_distance(a, b) < SAME_PERSON for a, b in pairs)
        print(
            f"\nall {len(pairs)} patient pairs: same bank {100 * bank / len(pairs):.0f}%, same sex "
            f"{100 * sex / len(pairs):.0f}%, both {100 * both / len(pairs):.0f}%, originals < 0.6: {near}"
        )

    def quarantined(self) -> None:
        print("\n## 2. quarantined photos")
        print(
            "| setting | patient | photo | reason | distance | set: tier, best rung (away, closer), "
            "donors matched |"
        )
        print("|---|---|---|---|---|---|")
        for s in self.settings:
            for (setting, identity), group in sorted(self.groups.items()):
                if setting != s:
                    continue
                for photo, (reason, dist) in enumerate(group.checks):
                    if reason == "ok":
                        continue
                    sets = "; ".join(self._set_summary(n, rungs) for n, rungs in sorted(group.rungs.items()))
                    print(f"| {s} | {self.who(identity)} | {photo} | {reason} | {dist:.3f} | {sets} |")

    @staticmethod
    def _set_summary(n: int, rungs: list[tuple[int, int, float, int, str]]) -> str:
        tier, level, away, closer, _ = max(rungs, key=lambda r: (r[2], r[3]))
        donors = sorted({d for r in rungs for d in r[4].split(",") if d != "-"})
        names = ",".join(d.removeprefix("london_") for d in donors) or "-"
        return f"s{n} t{tier} r{level} ({away:.3f}, {closer}) [{names}]"

    def sex_kept(self, setting: str) -> list[tuple[str, int, str, str]]:
        """Outputs whose probe reading differs from the original's: (identity, photo, before, after)."""
        ids, descs = self.outputs[f"{setting}_ids"], self.outputs[f"{setting}_desc"]
        seen: Counter[str] = Counter()
        misses = []
        for identity, desc in zip(ids, descs, strict=True):
            identity = str(identity)
            photo = seen[identity]
            seen[identity] += 1
            before = self.probes.call("sex", identity, self.originals[identity][photo])
            after = self.probes.call("sex", identity, desc)
            if before != after:
                misses.append((identity, photo, str(before), str(after)))
        return misses

    def sex_misses(self) -> None:
        print("\n## 3. sex misses (the bench's probe, original vs output)")
        print("| setting | patient (id sex eth bank) | photo | probe original -> output | tiers |")
        print("|---|---|---|---|---|")
        for s in self.settings:
            for who, photo, before, after in self.sex_kept(s):
                print(f"| {s} | {self.who(who)} | {photo} | {before} -> {after} | {self.tier(s, who)} |")

    def tiers(self) -> None:
        print("\n## 4. donor tiers: patients per final tier (by sex, by ethnicity) and the misses on each")
        print(
            "| setting | tier | patients | F / M | ethnicities | in a collision | quarantined | sex missed |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for s in self.settings:
            tested = sorted({str(i) for i in self.outputs[f"{s}_ids"]})
            colliding = {
                p
                for pair in pair_collisions(self.outputs[f"{s}_ids"], self.outputs[f"{s}_desc"])
                for p in pair
            }
            quarantined = {
                i
                for (setting, i), g in self.groups.items()
                if setting == s and any(r != "ok" for r, _ in g.checks)
            }
            missed = {i for i, *_ in self.sex_kept(s)}
            by_tier: dict[str, list[str]] = defaultdict(list)
            for identity in tested:
                by_tier[self.tier(s, identity)].append(identity)
            for tier, members in sorted(by_tier.items()):
                sexes = Counter(self.sex[i] for i in members)
                eths = ", ".join(f"{e} {c}" for e, c in Counter(self.eth[i] for i in members).most_common())
                print(
                    f"| {s} | {tier} | {len(members)} | {sexes['F']} / {sexes['M']} | {eths} | "
                    f"{len(colliding & set(members))} | {len(quarantined & set(members))} | "
                    f"{len(missed & set(members))} |"
                )

    def patients(self) -> None:
        """Per patient: tier, tier-5 pool and the misses per setting (C collision, Q quarantined, S sex)."""
        print("\n## per patient: tier (all settings), tier-5 pool, misses per setting (C / Q / S)")
        tones = "/".join(f"{t:.0f}" for t in TONES)
        head = f"| patient (id sex eth bank) | ITA° | same-sex donors within {tones}° | tier | tier-5 pool | "
        print(head + " | ".join(self.settings) + " |")
        print("|---|---|---|---|---|" + "---|" * len(self.settings))
        flags = {s: self._flags(s) for s in self.settings}
        tested = sorted({str(i) for s in self.settings for i in self.outputs[f"{s}_ids"]})
        for identity in sorted(tested, key=lambda i: (self.tier(self.settings[0], i), self.fold[i], i)):
            tiers = {self.tier(s, identity) for s in self.settings}
            cells = " | ".join(flags[s].get(identity, "") or "-" for s in self.settings)
            ita = self.ita(identity)
            near = "/".join(map(str, tone_near(ita, self.sex[identity], self.banks[self.fold[identity]])))
            tier, pool = "/".join(sorted(tiers)), len(self.pool(identity))
            print(f"| {self.who(identity)} | {ita:.0f} | {near} | {tier} | {pool} | {cells} |")

    def ita(self, identity: str) -> float:
        """The patient's skin tone as the other fold's bank measured it (every identity is a donor there)."""
        for bank in self.banks:
            for name, value in bank.items():
                if name.endswith(f"_{identity}"):
                    return value[2]
        return float("nan")

    def _flags(self, setting: str) -> dict[str, str]:
        out: dict[str, str] = defaultdict(str)
        for pair in pair_collisions(self.outputs[f"{setting}_ids"], self.outputs[f"{setting}_desc"]):
            for identity in pair:
                out[identity] = "C"
        for (s, identity), group in self.groups.items():
            if s == setting and any(r != "ok" for r, _ in group.checks):
                out[identity] += "Q"
        for identity in {i for i, *_ in self.sex_kept(setting)}:
            out[identity] += "S"
        return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="eval_pixels' --out folder")
    parser.add_argument("--trace", type=Path, required=True, help="eval_pixels' stderr with --trace")
    parser.add_argument("--faces", type=Path, default=FACES)
    args = parser.parse_args()
    report = Report(args.out, args.trace, args.faces)
    report.collisions()
    report.quarantined()
    report.sex_misses()
    report.tiers()
    report.patients()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
