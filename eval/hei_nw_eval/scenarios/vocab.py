"""Surface vocabularies of the evaluation scenarios.

These word lists belong to the evaluation alone. Anything trained on synthetic
data (the model adapter's training rows in ``hei_nw_plugin``) must draw from
other lists, or a model could score well by having memorised eval entities
rather than by recalling them; :func:`eval_vocabulary` returns every surface
string listed here so a trainer can assert the two sets are disjoint.

Slot values that are gold answers are at most two words, so EM and token F1 on
them measure recall rather than phrasing.
"""

from __future__ import annotations

PEOPLE: tuple[str, ...] = (
    "Orla", "Thaddeus", "Ingrid", "Bastian", "Marisol", "Cormac", "Yevgenia", "Lucan",
    "Perpetua", "Anselm", "Rosalind", "Idris", "Wilhelmina", "Osric", "Tamsin", "Evander",
    "Clementine", "Leopold", "Saoirse", "Ambrose", "Henrietta", "Casimir", "Philippa", "Ignatius",
    "Beatrix", "Delphine", "Horatio", "Ottilie", "Lysander", "Seraphina", "Barnaby", "Imelda",
    "Peregrine", "Winifred", "Evadne", "Cosimo", "Marguerite", "Alaric", "Hortense", "Tobiah",
    "Ysolde", "Florian", "Euphemia", "Gideon", "Leocadia", "Hamish", "Ludmila", "Rafferty",
    "Sidonie", "Caspian", "Honoria", "Emrys", "Philomena", "Matthias", "Eulalia", "Benedikt",
    "Zenobia", "Griselda", "Octavian", "Rosamund", "Lorcan", "Mirabel", "Isadora", "Percival",
)

# (past tense, base form): the story's verb. Part of every cue, never asked.
ACTIONS: tuple[tuple[str, str], ...] = (
    ("repaired", "repair"), ("borrowed", "borrow"), ("painted", "paint"), ("hid", "hide"),
    ("sold", "sell"), ("found", "find"), ("dropped", "drop"), ("polished", "polish"),
    ("wrapped", "wrap"), ("returned", "return"), ("photographed", "photograph"), ("measured", "measure"),
    ("buried", "bury"), ("mended", "mend"), ("weighed", "weigh"), ("unpacked", "unpack"),
)

OBJECTS: tuple[str, ...] = (
    "brass compass", "velvet satchel", "copper kettle", "silver thimble", "walnut chessboard",
    "linen map", "oak lantern", "pewter tankard", "ivory comb", "cobalt vase", "tin whistle",
    "amber brooch", "leather ledger", "glass prism", "bronze bell", "felt hat", "cedar box",
    "jade figurine", "wicker basket", "marble bust", "steel toolbox", "woollen scarf",
    "porcelain teapot", "iron key", "crimson umbrella", "canvas tent", "bamboo flute",
    "ceramic bowl", "rosewood clock", "quartz pendulum", "tartan blanket", "birch canoe",
    "opal ring", "slate tablet", "hemp rope", "cork globe", "zinc bucket", "mahogany stool",
    "lace veil", "granite mortar", "pearl hairpin", "straw hat", "ebony cane", "tweed jacket",
    "paper lantern", "clay whistle", "resin goblet", "willow basket",
)

PLACES: tuple[str, ...] = (
    "harbour office", "north pier", "rose garden", "old mill", "glass atrium", "east gallery",
    "pottery studio", "fish market", "chapel crypt", "rail depot", "tram shelter", "orchard gate",
    "lighthouse stairs", "music hall", "salt warehouse", "bell foundry", "weaving room",
    "canal bridge", "observatory dome", "print shop", "hop kiln", "ferry terminal", "tea pavilion",
    "quarry lodge", "riding school", "copper mine", "cider press", "bakery loft", "map room",
    "chess club", "boiler room", "hay barn", "clock tower", "spice bazaar", "ice rink",
    "fencing hall", "bus garage", "seed vault", "signal box", "tannery yard",
)

DAYS: tuple[str, ...] = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
PARTS_OF_DAY: tuple[str, ...] = ("morning", "afternoon", "evening")
TIMES: tuple[str, ...] = tuple(f"{d} {p}" for d in DAYS for p in PARTS_OF_DAY)

# Scenario B: facts about colleagues that get overridden. attribute -> values.
CITIES: tuple[str, ...] = (
    "Lisbon", "Valparaiso", "Tbilisi", "Reykjavik", "Ljubljana", "Montevideo", "Hobart", "Quito",
    "Tallinn", "Windhoek", "Bergen", "Trieste", "Halifax", "Cusco", "Porto", "Dunedin",
    "Antwerp", "Graz", "Mombasa", "Tromso",
)
TEAMS: tuple[str, ...] = (
    "Falcon", "Juniper", "Granite", "Meridian", "Tundra", "Solstice", "Basalt", "Quasar",
    "Cypress", "Nimbus", "Pelican", "Obsidian", "Harrier", "Lantana", "Fjord", "Sequoia",
)
LOCKERS: tuple[str, ...] = tuple(str(n) for n in range(112, 160, 3))
EXTENSIONS: tuple[str, ...] = tuple(str(n) for n in range(4021, 4900, 47))
PARKING_BAYS: tuple[str, ...] = tuple(f"{row}{n}" for row in "CFKR" for n in (3, 7, 12, 18))

# Scenario C: preferences and settings a user states once.
PREFERENCE_VALUES: dict[str, tuple[str, ...]] = {
    "coffee_milk": ("oat milk", "soy milk", "almond milk", "whole milk", "coconut milk", "skim milk"),
    "editor_theme": ("solarized", "monokai", "dracula", "gruvbox", "nord", "zenburn"),
    "reply_language": ("Portuguese", "Dutch", "Finnish", "Korean", "Catalan", "Swahili"),
    "alert_channel": ("email", "SMS", "Slack", "pager", "Signal", "Teams"),
    "diet": ("vegetarian", "vegan", "pescatarian", "gluten-free", "halal", "kosher"),
    "nickname": ("Captain", "Doc", "Chief", "Sunny", "Ace", "Skipper"),
    "focus_music": ("bluegrass", "synthwave", "baroque", "reggae", "jazz", "ambient"),
    "standup_time": ("7:15", "8:45", "9:30", "10:05", "11:20", "13:40"),
    "seat": ("aisle seat", "window seat", "exit row", "front row", "bulkhead seat", "back row"),
    "calendar_zone": ("Auckland", "Denver", "Nairobi", "Manila", "Lagos", "Helsinki"),
}
# Other people whose preferences the user mentions (scenario C's hard negatives).
HOLDERS: tuple[str, ...] = ("sister", "partner", "boss", "roommate", "brother", "neighbour")

# Worked examples shown to the model for the answer format; deliberately outside the
# lists above so an example can never give away an item's answer.
ONE_SHOT_STRINGS: tuple[str, ...] = (
    "Zebulon", "tartan kite", "salt marsh", "Friday dawn", "Kestrel", "Oslo", "Nuuk", "plum jam", "mint tea", "Ana", "Bo",
)


def eval_vocabulary() -> frozenset[str]:
    """Every entity string the evaluation generators can emit, lower-cased.

    Includes slot values (people, objects, places, times, cities, teams, numbers,
    preference values, holders), the verbs, and the one-shot example strings.
    Training-data generators should assert ``their_vocab.isdisjoint(eval_vocabulary())``.
    """
    strings: set[str] = set(PEOPLE) | set(OBJECTS) | set(PLACES) | set(TIMES) | set(DAYS)
    strings |= {past for past, _ in ACTIONS} | {base for _, base in ACTIONS}
    strings |= set(CITIES) | set(TEAMS) | set(LOCKERS) | set(EXTENSIONS) | set(PARKING_BAYS)
    strings |= set(HOLDERS) | set(ONE_SHOT_STRINGS)
    for values in PREFERENCE_VALUES.values():
        strings |= set(values)
    return frozenset(s.lower() for s in strings)
