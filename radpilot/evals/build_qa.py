"""Build the question-answering development set: one single-question scenario per file.

    python -m radpilot.evals.build_qa --data ../shared/data/cxr \
        --out radpilot/evals/scenarios/qa --seed 0

The wording comes from the hand-written `qa_questions.yaml`; the images and the reference
answers come from the data only (NIH labels, views and boxes, the cardiac set's reference
CTR), never from radpilot's outputs. Only test-split patients are used. The same data, seed and
phrasings give byte-identical files. See `scenarios/qa/README.md`.
"""

from __future__ import annotations

import argparse
import json
import random
import struct
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from radpilot.data.devdata import split_of

QUESTIONS = Path(__file__).with_name("qa_questions.yaml")
DICOM = "dicom/siim_chest_pa.dcm"  # a real CR chest PA study (see the data's README)

BOX_FINDING = {"Infiltrate": "Infiltration"}  # NIH box classes -> label names
# A finding whose absence is only asked on images without any of these related labels either.
RELATED = {
    "Effusion": ["Pleural_Thickening"], "Pleural_Thickening": ["Effusion"],
    "Consolidation": ["Pneumonia", "Infiltration", "Atelectasis"],
    "Pneumonia": ["Consolidation", "Infiltration"],
    "Infiltration": ["Pneumonia", "Consolidation", "Edema"],
    "Mass": ["Nodule"], "Nodule": ["Mass"], "Edema": ["Infiltration"],
    "Atelectasis": ["Consolidation"],
}  # fmt: skip
LUNG_OPACITY = ["Pneumonia", "Consolidation", "Mass", "Atelectasis", "Edema", "Infiltration"]
CLEAR_ABNORMAL = ["Effusion", "Pneumothorax", "Cardiomegaly", "Mass"]
OPACITY_SIDE = ["Effusion", "Pneumonia", "Consolidation", "Atelectasis", "Mass"]
# Labels that whiten a lung: an image answers "which side is whiter?" only when each of these it
# carries is boxed on one and the same side.
OPACIFYING = [*OPACITY_SIDE, "Infiltration", "Edema", "Pleural_Thickening", "Fibrosis"]
SIDE_FINDINGS = ["Effusion", "Pneumothorax", "Mass", "Nodule", "Atelectasis", "Pneumonia",
                 "Infiltration"]  # fmt: skip
OPEN_FINDINGS = ["Effusion", "Pneumothorax", "Cardiomegaly", "Mass", "Atelectasis", "Pneumonia",
                 "Nodule", "Emphysema"]  # fmt: skip
CTR_NORMAL_MAX, CTR_ENLARGED_MIN = 0.48, 0.55  # a margin around 0.5: no borderline hearts
MIDLINE_MARGIN = 0.10  # a box centred within 10% of the width of the middle decides no side
LARGE_BOX = 80 * 80  # px²: a mass this big makes one side visibly whiter
OTHER = {"left": "right", "right": "left"}
ABBR = {"left": "L", "right": "R"}
IDENTITY_TOOLS_NOT = ["classify_findings", "localize_finding"]
OFF_TOPIC_TOOLS_NOT = ["classify_findings", "knowledge_graph", "search_guidelines"]

Rec = dict[str, Any]


def png_width(path: Path) -> int:
    with path.open("rb") as handle:
        header = handle.read(24)
    if header[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG")
    return int(struct.unpack(">I", header[16:20])[0])


def read_jsonl(path: Path) -> list[Rec]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def box_sides(record: Rec, width: int) -> dict[str, str]:
    """Finding -> the patient's side its boxes decide (image left = patient right). A finding
    with a box near the midline, or boxes on both sides, decides nothing; nor does the heart."""
    sides: dict[str, set[str]] = {}
    for box in record.get("boxes", []):
        finding = BOX_FINDING.get(box["label"], box["label"])
        if finding == "Cardiomegaly":  # the heart's box is about size, not a side
            continue
        x, _, w, _ = box["xywh"]
        centre = x + w / 2
        if abs(centre - width / 2) < MIDLINE_MARGIN * width:
            side = "midline"
        else:
            side = "right" if centre < width / 2 else "left"
        sides.setdefault(finding, set()).add(side)
    return {f: next(iter(s)) for f, s in sides.items() if len(s) == 1 and "midline" not in s}


def box_area(record: Rec, finding: str) -> float:
    return max((b["xywh"][2] * b["xywh"][3] for b in record.get("boxes", [])
                if BOX_FINDING.get(b["label"], b["label"]) == finding), default=0.0)  # fmt: skip


class Data:
    """The test-split records, with each NIH image's decided box sides."""

    def __init__(self, root: Path) -> None:
        rows = read_jsonl(root / "nih" / "labels.jsonl")
        self.nih = sorted(
            (r for r in rows if split_of(r["patient_id"]) == "test"), key=lambda r: r["image"]
        )
        for record in self.nih:
            record["_sides"] = box_sides(record, png_width(root / record["image"]))
        cardiac = read_jsonl(root / "cardiac" / "labels.jsonl")
        self.cardiac = sorted(
            (r for r in cardiac if split_of(r["patient_id"]) == "test"), key=lambda r: r["image"]
        )
        self.normal = [r for r in self.nih if not r["labels"]]

    def having(self, finding: str) -> list[Rec]:
        return [r for r in self.nih if finding in r["labels"]]

    def positive_pools(self, finding: str) -> list[list[Rec]]:
        """Images labelled with the finding, the least ambiguous first: boxed by a radiologist
        and the only label, boxed, the only label, any."""
        rows = self.having(finding)
        boxed = [r for r in rows if box_area(r, finding) > 0]
        return [[r for r in boxed if len(r["labels"]) == 1], boxed,
                [r for r in rows if len(r["labels"]) == 1], rows]  # fmt: skip

    def without(self, finding: str) -> list[Rec]:
        """Images with other labels but neither the finding nor a related one."""
        banned = {finding, *RELATED.get(finding, [])}
        return [r for r in self.nih if r["labels"] and not banned & set(r["labels"])]

    def ctr(self, lo: float, hi: float) -> list[Rec]:
        return [r for r in self.cardiac if r.get("ctr_reference") is not None
                and lo <= r["ctr_reference"] <= hi]  # fmt: skip


class Picker:
    """Deterministic image choice that spreads questions over images: the least used image
    wins, then the more preferred pool, then the seeded random generator."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: Counter[str] = Counter()

    def pick(self, pools: Sequence[Sequence[Rec]]) -> Rec:
        ranked: dict[str, tuple[int, Rec]] = {}
        for rank, pool in enumerate(pools):
            for record in pool:
                if record["image"] not in ranked:
                    ranked[record["image"]] = (rank, record)
        if not ranked:
            raise ValueError("no image fits this question in the data's test split")
        keys = {img: (self.used[img], rank) for img, (rank, _) in ranked.items()}
        best = min(keys.values())
        choice = self.rng.choice(sorted(img for img, key in keys.items() if key == best))
        self.used[choice] += 1
        return ranked[choice][1]


def split_yes(rng: random.Random, n: int, n_yes: int) -> list[bool]:
    """n answers, n_yes of them yes, in a seeded order."""
    answers = [True] * n_yes + [False] * (n - n_yes)
    rng.shuffle(answers)
    return answers


def yn(value: bool) -> str:
    return "yes" if value else "no"


def fill(template: str, fw: str = "", side: str = "left") -> str:
    text = template.format(fw=fw, side=side, Side=side.capitalize(), side_abbr=ABBR[side],
                           other=OTHER[side])  # fmt: skip
    return text[0].upper() + text[1:] if template.startswith("{Side}") else text


class Builder:
    def __init__(self, data: Data, questions: dict[str, Any], seed: int) -> None:
        self.data, self.q, self.seed = data, questions, seed
        self.picker = Picker(random.Random(f"qa-images-{seed}"))
        self.scenarios: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()

    def rng(self, category: str) -> random.Random:
        return random.Random(f"qa-{category}-{self.seed}")

    def add(self, category: str, ask: str, tags: list[str], study: str | None = None,
            **expect: Any) -> None:  # fmt: skip
        self.counts[category] += 1
        number = self.counts[category]
        scenario: dict[str, Any] = {"id": f"qa-{category.replace('_', '-')}-{number:03d}"}
        if study:
            scenario["study"] = study
        order = ["answer", "side", "mentions", "tools", "tools_not", "refuses", "clarifies"]
        unknown = set(expect) - set(order)
        if unknown:
            raise ValueError(f"unknown expectation keys: {sorted(unknown)}")
        scenario["turns"] = [{
            "ask": ask,
            "tags": list(dict.fromkeys([category, *tags])),
            "expect": {k: expect[k] for k in order if expect.get(k) is not None},
        }]  # fmt: skip
        self.scenarios.append(scenario)

    def any_image(self, prefer_view: str | None = None) -> Rec:
        nih = self.data.nih
        if prefer_view:
            return self.picker.pick([[r for r in nih if r["view"] == prefer_view], nih])
        return self.picker.pick([nih])

    # -- categories ------------------------------------------------------------------------

    def finding(self) -> None:
        rng, data = self.rng("finding"), self.data
        for finding, asks in self.q["finding"].items():
            positives = data.having(finding)
            n_yes = min(round(0.4 * len(asks)), len(positives))
            no_index = 0
            for ask, present in zip(asks, split_yes(rng, len(asks), n_yes), strict=True):
                if present:
                    record = self.picker.pick(data.positive_pools(finding))
                else:
                    pools = [data.normal, data.without(finding)]
                    record = self.picker.pick(pools if no_index % 2 == 0 else pools[::-1])
                    no_index += 1
                self.add("finding", ask, ["closed", finding.lower()], record["image"],
                         answer=yn(present))  # fmt: skip

    def heart_record(self, enlarged: bool, cardiac: bool) -> Rec:
        data = self.data
        if cardiac:
            pool = data.ctr(CTR_ENLARGED_MIN, 9.0) if enlarged else data.ctr(0.0, CTR_NORMAL_MAX)
            return self.picker.pick([pool])
        if enlarged:
            return self.picker.pick(data.positive_pools("Cardiomegaly"))
        return self.picker.pick([[r for r in data.normal if r["view"] == "PA"], data.normal])

    def polarity(self) -> None:
        rng, data, q = self.rng("polarity"), self.data, self.q["polarity"]
        asks = q["heart_normal"]
        for i, (ask, normal) in enumerate(zip(asks, split_yes(rng, len(asks), len(asks) // 2),
                                              strict=True)):  # fmt: skip
            record = self.heart_record(enlarged=not normal, cardiac=i % 3 == 2)
            self.add("polarity", ask, ["closed", "heart"], record["image"], answer=yn(normal))
        lung_pools = [[r for r in data.nih if len(r["labels"]) == 1
                       and r["labels"][0] in LUNG_OPACITY and r["_sides"]],
                      [r for r in data.nih if len(r["labels"]) == 1
                       and r["labels"][0] in LUNG_OPACITY],
                      [r for r in data.nih if set(r["labels"]) & set(LUNG_OPACITY)]]  # fmt: skip
        asks = q["lungs_clear"]
        for ask, clear in zip(asks, split_yes(rng, len(asks), len(asks) // 2), strict=True):
            record = self.picker.pick([data.normal] if clear else lung_pools)
            self.add("polarity", ask, ["closed", "lungs"], record["image"], answer=yn(clear))
        asks = q["cp_angles_sharp"]
        for ask, sharp in zip(asks, split_yes(rng, len(asks), len(asks) // 2), strict=True):
            record = self.picker.pick([data.normal] if sharp else data.positive_pools("Effusion"))
            self.add("polarity", ask, ["closed", "costophrenic"], record["image"],
                     answer=yn(sharp))  # fmt: skip
        items = q["rule_out"]
        for item, absent in zip(items, split_yes(rng, len(items), len(items) // 2), strict=True):
            finding = item["finding"]
            pools = [data.normal] if absent else data.positive_pools(finding)
            record = self.picker.pick(pools)
            self.add("polarity", item["ask"], ["closed", "rule_out", finding.lower()],
                     record["image"], answer=yn(absent))  # fmt: skip

    def side_triples(self, findings: list[str]) -> dict[str, list[Rec]]:
        return {f: [r for r in self.data.nih if f in r["labels"] and f in r["_sides"]]
                for f in findings}  # fmt: skip

    def side(self) -> None:
        rng, q = self.rng("side"), self.q["side"]
        words = self.q["finding_words"]
        triples = self.side_triples(SIDE_FINDINGS)
        turn = 0
        answers = split_yes(rng, len(q["closed"]), len(q["closed"]) // 2)
        for template, same in zip(q["closed"], answers, strict=True):
            finding = SIDE_FINDINGS[turn % len(SIDE_FINDINGS)]
            turn += 1
            record = self.picker.pick([triples[finding]])
            actual = record["_sides"][finding]
            asked = actual if same else OTHER[actual]
            ask = fill(template, rng.choice(words[finding]), asked)
            self.add("side", ask, ["closed", finding.lower()], record["image"],
                     answer=yn(same), side=actual)  # fmt: skip
        for template in q["open"]:
            finding = SIDE_FINDINGS[turn % len(SIDE_FINDINGS)]
            turn += 1
            record = self.picker.pick([triples[finding]])
            actual = record["_sides"][finding]
            ask = fill(template, rng.choice(words[finding]))
            self.add("side", ask, ["open", finding.lower()], record["image"], side=actual,
                     mentions=[actual])  # fmt: skip

    def abnormal_pools(self, finding: str) -> list[list[Rec]]:
        """Images with a clear finding, the least ambiguous first (see `positive_pools`),
        then any image with one of the clear findings."""
        clear = [r for r in self.data.nih if set(r["labels"]) & set(CLEAR_ABNORMAL)]
        return [*self.data.positive_pools(finding), clear]

    def normality(self) -> None:
        rng, q = self.rng("normality"), self.q["normality"]
        abnormal = 0
        for kind, yes_means_normal in (("is_normal", True), ("any_abnormal", False)):
            asks = q[kind]
            for ask, normal in zip(asks, split_yes(rng, len(asks), len(asks) // 2), strict=True):
                if normal:
                    record = self.picker.pick([self.data.normal])
                else:
                    finding = CLEAR_ABNORMAL[abnormal % len(CLEAR_ABNORMAL)]
                    abnormal += 1
                    record = self.picker.pick(self.abnormal_pools(finding))
                self.add("normality", ask, ["closed", kind], record["image"],
                         answer=yn(normal == yes_means_normal))  # fmt: skip

    def heart_size(self) -> None:
        rng, q = self.rng("heart_size"), self.q["heart_size"]
        asks = q["enlarged"]
        for i, (ask, enlarged) in enumerate(zip(asks, split_yes(rng, len(asks), len(asks) // 2),
                                                strict=True)):  # fmt: skip
            record = self.heart_record(enlarged=enlarged, cardiac=i % 2 == 1)
            self.add("heart_size", ask, ["closed", "enlarged"], record["image"],
                     answer=yn(enlarged))  # fmt: skip
        with_ctr = self.data.ctr(0.0, 9.0)
        for ask in q["ctr_open"]:
            record = self.picker.pick([with_ctr])
            self.add("heart_size", ask, ["open", "ctr"], record["image"], mentions=["ratio"])

    def unsupported(self) -> None:
        for group in self.q["unsupported"]:
            for form in ("closed", "open"):
                for ask in group.get(form, []):
                    record = self.any_image(group.get("prefer_view"))
                    self.add("unsupported", ask, [form, group["topic"]], record["image"],
                             answer="cannot_assess")  # fmt: skip

    def attribute(self) -> None:
        rng, data, q = self.rng("attribute"), self.data, self.q["attribute"]
        items = q["projection"]
        for item, matches in zip(items, split_yes(rng, len(items), len(items) // 2), strict=True):
            if item.get("dicom"):
                self.add("attribute", item["ask"], ["closed", "projection"], DICOM,
                         answer=yn(item["asks"] == "PA"))  # fmt: skip
                continue
            view = item["asks"] if matches else {"AP": "PA", "PA": "AP"}[item["asks"]]
            record = self.picker.pick([[r for r in data.nih if r["view"] == view]])
            self.add("attribute", item["ask"], ["closed", "projection"], record["image"],
                     answer=yn(matches))  # fmt: skip
        for item in q["modality_open"]:
            study = DICOM if item.get("dicom") else self.any_image()["image"]
            self.add("attribute", item["ask"], ["open", "modality"], study,
                     mentions=["radiograph"])  # fmt: skip
        for item in q["modality_closed"]:
            study = DICOM if item.get("dicom") else self.any_image()["image"]
            self.add("attribute", item["ask"], ["closed", "modality"], study,
                     answer=item["answer"])  # fmt: skip
        for topic in ("sex", "age"):
            for form in ("closed", "open"):
                for ask in q[f"{topic}_{form}"]:
                    self.add("attribute", ask, [form, topic], self.any_image()["image"],
                             answer="cannot_assess")  # fmt: skip
        opaque = {r["image"]: side for r in data.nih if (side := self.one_opaque_side(r))}
        opacity = [r for r in data.nih if r["image"] in opaque]
        pools = [[r for r in opacity if len(r["labels"]) == 1], opacity]
        for template in q["opacity_open"]:
            record = self.picker.pick(pools)
            side = opaque[record["image"]]
            self.add("attribute", template, ["open", "opacity"], record["image"], side=side,
                     mentions=[side])  # fmt: skip
        closed = q["opacity_closed"]
        for template, same in zip(closed, split_yes(rng, len(closed), len(closed) // 2),
                                  strict=True):  # fmt: skip
            record = self.picker.pick(pools)
            side = opaque[record["image"]]
            ask = fill(template, side=side if same else OTHER[side])
            self.add("attribute", ask, ["closed", "opacity"], record["image"], answer=yn(same),
                     side=side)  # fmt: skip

    @staticmethod
    def one_opaque_side(record: Rec) -> str | None:
        """The side of an opacity-causing boxed finding (a mass only when large), when every
        opacifying label of the image is boxed on that same side."""
        labels = [f for f in OPACIFYING if f in record["labels"]]
        sides = {record["_sides"].get(f) for f in labels}
        big = [f for f in OPACITY_SIDE if f in labels
               and (f != "Mass" or box_area(record, f) >= LARGE_BOX)]  # fmt: skip
        if not big or len(sides) != 1 or None in sides:
            return None
        return str(next(iter(sides)))

    def knowledge(self) -> None:
        for item in self.q["knowledge"]:
            study = self.any_image()["image"] if item.get("with_study") else None
            form = "closed" if "answer" in item else "open"
            self.add("knowledge", item["ask"], [form], study, answer=item.get("answer"),
                     mentions=item.get("mentions"), tools_not=["classify_findings"],
                     refuses=False)  # fmt: skip

    def refusals(self) -> None:
        for ask in self.q["identity"]:
            self.add("identity", ask, ["open"], self.any_image()["image"], refuses=True,
                     tools_not=IDENTITY_TOOLS_NOT)  # fmt: skip
        for i, ask in enumerate(self.q["off_topic"]):
            study = self.any_image()["image"] if i % 2 == 0 else None
            self.add("off_topic", ask, ["open"], study, refuses=True,
                     tools_not=OFF_TOPIC_TOOLS_NOT)  # fmt: skip

    def open(self) -> None:
        data, q = self.data, self.q["open"]
        for i, ask in enumerate(q["main_finding"]):
            finding = OPEN_FINDINGS[i % len(OPEN_FINDINGS)]
            single = [r for r in data.nih if r["labels"] == [finding]]
            record = self.picker.pick([[r for r in single if box_area(r, finding) > 0], single])
            word = finding.lower().replace("_", " ")
            self.add("open", ask, ["open", "main_finding"], record["image"], mentions=[word])
        lateral = [r for r in data.nih if len(r["labels"]) == 1
                   and r["labels"][0] in r["_sides"] and len(r["boxes"]) == 1]  # fmt: skip
        for ask in q["which_side"]:
            record = self.picker.pick([lateral])
            side = record["_sides"][record["labels"][0]]
            self.add("open", ask, ["open", "which_side"], record["image"], side=side,
                     mentions=[side])  # fmt: skip

    def unclear(self) -> None:
        for ask in self.q["unclear"]:
            self.add("unclear", ask, ["open"], self.any_image()["image"], clarifies=True)

    def build(self) -> list[dict[str, Any]]:
        self.finding()
        self.polarity()
        self.side()
        self.normality()
        self.heart_size()
        self.attribute()
        self.open()
        self.unsupported()
        self.knowledge()
        self.refusals()
        self.unclear()
        return self.scenarios


def build(data_dir: Path, seed: int, questions: Path = QUESTIONS) -> list[dict[str, Any]]:
    phrasings = yaml.safe_load(questions.read_text(encoding="utf-8"))
    return Builder(Data(data_dir), phrasings, seed).build()


class _Dumper(yaml.SafeDumper):
    """Block mappings, flow lists: `tags: [finding, closed]`."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flat = all(not isinstance(item, dict | list) for item in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat)


_Dumper.add_representer(list, _represent_list)


def write(scenarios: list[dict[str, Any]], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for stale in sorted(out.glob("qa-*.yaml")):
        stale.unlink()
    for scenario in scenarios:
        text = yaml.dump(scenario, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                         width=100, default_flow_style=False)  # fmt: skip
        (out / f"{scenario['id']}.yaml").write_text(text, encoding="utf-8")


def summary(scenarios: list[dict[str, Any]]) -> dict[str, Any]:
    turns = [s["turns"][0] for s in scenarios]
    return {
        "scenarios": len(scenarios),
        "categories": dict(Counter(t["tags"][0] for t in turns)),
        "forms": dict(Counter("closed" if "closed" in t["tags"] else "open" for t in turns)),
        "answers": dict(Counter(t["expect"].get("answer", "-") for t in turns)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/cxr"))
    parser.add_argument("--out", type=Path, default=Path("radpilot/evals/scenarios/qa"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--questions", type=Path, default=QUESTIONS)
    args = parser.parse_args(argv)
    scenarios = build(args.data, args.seed, args.questions)
    write(scenarios, args.out)
    print(json.dumps(summary(scenarios), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
