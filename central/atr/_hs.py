"""What declared goods look like in a dual-energy X-ray image, by Harmonized System heading.

Each row of :data:`HS_TABLE` says, for an HS chapter (2 digits), heading (4)
or subheading (6) of the WCO HS Nomenclature 2022, which material classes
the goods show (:class:`core.calibration.MaterialClass`: organic Z_eff < 10,
inorganic / light metal 10–18, metal ≥ 18), the effective-Z range the image
should find, and the bulk density of the load **as packed in a container**:
goods, packaging and the voids between packages, in g/cm³ (= t/m³).  The
lookup (:func:`expectation`) takes the most specific row: subheading, then
heading, then chapter.  Free text is matched to a row by its keywords
(:func:`match_text`).

Densities come from stowage factors: density = 1 / SF with SF in m³/t (the
space one tonne of the cargo takes, including unavoidable stowage losses).
The anchors are:

* [T] GDV Transport Information Service, "Stowage factor" and the cargo
  information pages (tis-gdv.de/tis_e/misc/staumass.htm): coffee in 60 kg
  bags 1.9 m³/t, hides wet-salted 1.27 m³/t, hemp bales compressed
  2.55–3.40 m³/t.
* [W] Wärtsilä Encyclopedia of Ship Technology, "Stowage factor": steel
  products 0.3–0.6 m³/t, coal 1.2–1.4, grain 1.2–2.0, bauxite 0.7–1.1.
* [S] Saurbier & Meurn, *Marine Cargo Operations* (ft³ per long ton; × 0.0279
  gives m³/t): tyres 100 (2.8 m³/t), coffee in bags 70 (1.95), oranges in
  cartons 63 (1.76), lead ingots 11 (0.31).
* [E] an estimate of this module: the product's own density and the way it
  is packed (cartons, pallets, coils, drums), where no table above gives it.

The ranges are deliberately generous (roughly the tabled range widened by a
third either way, and a whole chapter's spread where the chapter mixes goods):
an honest trader must not be flagged, so a range only excludes what the goods
cannot be.  Effective-Z ranges follow the class boundaries of
``core.calibration`` with a margin for the calibration's spread.
"""
# ruff: noqa: RUF001, RUF002, RUF003

from __future__ import annotations

import re
from dataclasses import dataclass

from core.calibration import MaterialClass

__all__ = [
    "HS_TABLE",
    "HsExpectation",
    "expectation",
    "match_text",
    "normalise_hs",
]

_O = (MaterialClass.ORGANIC,)
_I = (MaterialClass.INORGANIC,)
_M = (MaterialClass.METAL,)
_OI = (MaterialClass.ORGANIC, MaterialClass.INORGANIC)
_IM = (MaterialClass.INORGANIC, MaterialClass.METAL)
_OM = (MaterialClass.ORGANIC, MaterialClass.METAL)
_OIM = (MaterialClass.ORGANIC, MaterialClass.INORGANIC, MaterialClass.METAL)

#: Effective-Z range of each class set: the ``core.calibration`` boundaries (10, 18)
#: with about one unit of margin for the per-scanner calibration's spread.
_ZEFF: dict[tuple[MaterialClass, ...], tuple[float, float]] = {
    _O: (5.0, 11.0),
    _I: (9.0, 19.0),
    _M: (17.0, 32.0),
    _OI: (5.0, 19.0),
    _IM: (9.0, 32.0),
    _OM: (5.0, 32.0),
    _OIM: (5.0, 32.0),
}


@dataclass(frozen=True, slots=True)
class HsExpectation:
    """What one HS chapter, heading or subheading looks like in the image.

    Attributes:
        heading: The table row's code: 2 digits (chapter), 4 (heading) or 6 (subheading).
        description: Plain words an officer reads ("ceramic tiles").
        classes: Material classes the load may show (any mix of them is consistent).
        zeff_range: (low, high) effective atomic number of the load's bulk.
        density_range: (low, high) bulk density as packed in a container, g/cm³.
        source: Where the density comes from (a key of the module docstring and the figure).
        keywords: Phrases that identify the goods in free text (lower case, singular).
    """

    heading: str
    description: str
    classes: tuple[MaterialClass, ...]
    zeff_range: tuple[float, float]
    density_range: tuple[float, float]
    source: str
    keywords: tuple[str, ...] = ()

    @property
    def level(self) -> str:
        """``"chapter"``, ``"heading"`` or ``"subheading"``, from the code's length."""
        return {2: "chapter", 4: "heading"}.get(len(self.heading), "subheading")

    def class_names(self) -> str:
        """The expected classes in words, e.g. ``"organic or inorganic"``."""
        return " or ".join(c.name.lower() for c in self.classes)


def _row(
    code: str,
    description: str,
    classes: tuple[MaterialClass, ...],
    density: tuple[float, float],
    source: str,
    keywords: tuple[str, ...] = (),
) -> HsExpectation:
    return HsExpectation(code, description, classes, _ZEFF[classes], density, source, keywords)


_ROWS: tuple[HsExpectation, ...] = (
    # --- food (chapters 02–22) ---------------------------------------------------------------
    _row(
        "02",
        "meat",
        _O,
        (0.35, 0.95),
        "[E] frozen cartons SF 1.5–2.0 m³/t",
        ("meat", "frozen meat", "pork", "poultry", "chicken", "mutton", "lamb"),
    ),
    _row(
        "0202",
        "frozen bovine meat",
        _O,
        (0.4, 0.95),
        "[E] frozen beef cartons SF 1.5–1.8 m³/t",
        ("frozen beef", "beef", "bovine meat", "frozen bovine"),
    ),
    _row(
        "03",
        "fish and seafood",
        _O,
        (0.35, 0.95),
        "[E] frozen fish cartons SF 1.6–2.0 m³/t",
        ("fish", "seafood", "shrimp", "prawn", "tuna", "squid"),
    ),
    _row(
        "04",
        "dairy products",
        _O,
        (0.35, 0.95),
        "[E] milk powder bags, cheese SF 1.4–2.2 m³/t",
        ("dairy", "milk", "milk powder", "cheese", "butter", "egg"),
    ),
    _row(
        "07",
        "vegetables",
        _O,
        (0.25, 0.85),
        "[E] bags and cartons SF 1.6–2.8 m³/t",
        ("vegetable", "potato", "onion", "garlic", "tomato", "bean", "lentil"),
    ),
    _row(
        "08",
        "fruit and nuts",
        _O,
        (0.25, 0.8),
        "[S] oranges in cartons 1.76 m³/t",
        (
            "fruit",
            "orange",
            "banana",
            "apple",
            "citrus",
            "grape",
            "nut",
            "cashew",
            "walnut",
            "almond",
        ),
    ),
    _row(
        "09",
        "coffee, tea, spices",
        _O,
        (0.2, 0.8),
        "[T] coffee in bags 1.9 m³/t",
        ("coffee", "tea", "spice", "pepper", "cinnamon"),
    ),
    _row(
        "10",
        "cereals",
        _O,
        (0.45, 1.0),
        "[W] grain 1.2–2.0 m³/t",
        ("cereal", "grain", "wheat", "maize", "corn", "barley", "sorghum"),
    ),
    _row("1006", "rice", _O, (0.5, 1.0), "[W] grain 1.2–2.0 m³/t; rice bags ~1.4 [E]", ("rice",)),
    _row(
        "11",
        "flour and milling products",
        _O,
        (0.4, 0.95),
        "[E] flour bags SF 1.4–1.8 m³/t",
        ("flour", "malt", "starch", "semolina"),
    ),
    _row(
        "15",
        "fats and oils",
        _O,
        (0.45, 1.05),
        "[E] drums SF 1.4–1.7, flexitank ~1.1 m³/t",
        ("oil", "vegetable oil", "palm oil", "olive oil", "fat", "margarine"),
    ),
    _row(
        "16",
        "preserved meat and fish (cans)",
        _OI,
        (0.45, 1.05),
        "[E] canned goods in cartons SF 1.3–1.6 m³/t",
        ("canned meat", "canned fish", "sausage", "canned tuna", "sardine"),
    ),
    _row(
        "17",
        "sugar and confectionery",
        _O,
        (0.3, 1.0),
        "[E] sugar bags SF 1.2–1.5 m³/t",
        ("sugar", "confectionery", "candy", "molasses"),
    ),
    _row(
        "19",
        "cereal preparations (pasta, biscuits)",
        _O,
        (0.12, 0.7),
        "[E] pasta, biscuits in cartons SF 2–5 m³/t",
        ("pasta", "biscuit", "noodle", "bread", "cookie", "breakfast cereal"),
    ),
    _row(
        "20",
        "preserved vegetables and fruit",
        _OI,
        (0.4, 1.05),
        "[E] cans and jars in cartons SF 1.3–1.7 m³/t",
        ("canned fruit", "canned vegetable", "juice", "tomato paste", "jam"),
    ),
    _row(
        "21",
        "miscellaneous food preparations",
        _O,
        (0.25, 0.95),
        "[E] cartons SF 1.5–3 m³/t",
        ("sauce", "soup", "yeast", "food preparation", "instant coffee"),
    ),
    _row(
        "22",
        "beverages",
        _OI,
        (0.35, 0.95),
        "[E] bottles and cans in cartons SF 1.5–2 m³/t",
        (
            "beverage",
            "drink",
            "beer",
            "wine",
            "water",
            "mineral water",
            "spirit",
            "whisky",
            "soft drink",
        ),
    ),
    # --- tobacco, minerals, fuels, chemicals (24–38) ----------------------------------------
    _row(
        "24",
        "tobacco",
        _O,
        (0.15, 0.5),
        "[E] leaf bales, cartons SF 2.5–4.5 m³/t",
        ("tobacco", "cigar"),
    ),
    _row("2402", "cigarettes", _O, (0.15, 0.4), "[E] master cases SF 3.5–4.5 m³/t", ("cigarette",)),
    _row(
        "25",
        "salt, stone, cement",
        _I,
        (0.7, 2.6),
        "[W] bauxite 0.7–1.1 m³/t; bagged ~0.8 [E]",
        ("salt", "cement", "gypsum", "quicklime", "sand", "clay", "marble block", "mineral"),
    ),
    _row("2523", "cement", _I, (0.9, 1.8), "[E] bags SF 0.7–0.9 m³/t", ("cement", "clinker")),
    _row(
        "27",
        "mineral fuels and oils",
        _O,
        (0.45, 1.2),
        "[W] coal 1.2–1.4 m³/t; drums [E]",
        (
            "coal",
            "coke",
            "petroleum",
            "lubricant",
            "bitumen",
            "fuel",
            "diesel",
            "paraffin",
            "engine oil",
            "lubricating oil",
            "motor oil",
        ),
    ),
    _row(
        "28",
        "inorganic chemicals",
        _I,
        (0.55, 1.8),
        "[E] bags and drums SF 0.6–1.5 m³/t",
        ("inorganic chemical", "soda ash", "caustic soda", "titanium dioxide", "sulphuric acid"),
    ),
    _row(
        "29",
        "organic chemicals",
        _O,
        (0.4, 1.05),
        "[E] drums and IBCs SF 1.2–1.8 m³/t",
        ("organic chemical", "alcohol", "solvent", "glycol", "methanol"),
    ),
    _row(
        "32",
        "paints, pigments, inks",
        _OIM,
        (0.5, 1.5),
        "[E] tins and drums SF 0.9–1.6 m³/t",
        ("paint", "pigment", "ink", "varnish", "dye"),
    ),
    _row(
        "33",
        "cosmetics and perfumery",
        _OI,
        (0.2, 0.7),
        "[E] cartons SF 2–4 m³/t",
        ("cosmetic", "perfume", "shampoo", "toothpaste", "essential oil"),
    ),
    _row(
        "34",
        "soap and detergents",
        _OI,
        (0.3, 0.95),
        "[E] cartons and bags SF 1.4–2.5 m³/t",
        ("soap", "detergent", "washing powder", "candle", "wax"),
    ),
    _row(
        "38",
        "miscellaneous chemical products",
        _OI,
        (0.35, 1.4),
        "[E] drums and bags SF 0.9–2 m³/t",
        ("chemical", "pesticide", "insecticide", "herbicide", "additive"),
    ),
    # --- plastics, rubber, leather, wood, paper (39–49) -------------------------------------
    _row(
        "39",
        "plastics",
        _O,
        (0.08, 0.8),
        "[E] granules in bags SF 1.6–2.2; articles 3–8 m³/t",
        ("plastic", "polymer", "polyethylene", "polypropylene", "pvc", "resin", "granule"),
    ),
    _row(
        "3923",
        "plastic packaging articles",
        _O,
        (0.05, 0.4),
        "[E] cartons SF 3–10 m³/t",
        ("plastic bag", "plastic bottle", "plastic container", "preform"),
    ),
    _row(
        "40",
        "rubber and rubber articles",
        _O,
        (0.12, 0.8),
        "[E] natural rubber bales SF 1.6–1.9 m³/t; articles",
        ("rubber", "latex"),
    ),
    _row(
        "4011",
        "new pneumatic tyres",
        _OM,
        (0.1, 0.7),
        "[S] tyres 2.8 m³/t; higher as imaged: the bores show empty [E]",
        ("tyre", "tire", "pneumatic tyre"),
    ),
    _row(
        "4012",
        "used or retreaded tyres",
        _OM,
        (0.1, 0.7),
        "[S] tyres 2.8 m³/t; higher as imaged: the bores show empty [E]",
        ("used tyre", "retreaded tyre", "used tire"),
    ),
    _row(
        "41",
        "hides and leather",
        _O,
        (0.2, 1.0),
        "[T] hides wet-salted 1.27, dried 5.1 m³/t",
        ("hide", "skin", "leather", "wet blue"),
    ),
    _row(
        "42",
        "leather articles and bags",
        _O,
        (0.08, 0.45),
        "[E] cartons SF 3–8 m³/t",
        ("handbag", "leather bag", "travel bag", "luggage", "suitcase", "wallet", "leather belt"),
    ),
    _row(
        "44",
        "wood and wood articles",
        _O,
        (0.3, 0.95),
        "[E] sawn timber, plywood SF 1.4–2.3 m³/t",
        ("wood", "timber", "lumber", "plywood", "log", "veneer", "wooden pallet"),
    ),
    _row("47", "wood pulp", _O, (0.5, 1.0), "[E] pulp bales SF 1.3–1.7 m³/t", ("pulp",)),
    _row(
        "48",
        "paper and paperboard",
        _O,
        (0.35, 1.0),
        "[E] reels and sheets SF 1.3–2.5 m³/t",
        ("paper", "paperboard", "cardboard", "carton board", "newsprint", "tissue"),
    ),
    _row(
        "49",
        "printed matter",
        _O,
        (0.4, 1.0),
        "[E] books in cartons SF 1.3–2.0 m³/t",
        ("book", "printed matter", "newspaper", "magazine", "brochure"),
    ),
    # --- textiles and footwear (50–64) ------------------------------------------------------
    _row("50", "silk", _O, (0.15, 0.75), "[T] bales compressed 2.55–3.40 m³/t (hemp)", ("silk",)),
    _row(
        "51",
        "wool and animal hair",
        _O,
        (0.15, 0.75),
        "[T] bales compressed 2.55–3.40 m³/t",
        ("wool", "cashmere"),
    ),
    _row(
        "52",
        "cotton",
        _O,
        (0.15, 0.8),
        "[E] compressed bales SF 1.5–2.5; yarn, fabric",
        ("cotton", "cotton yarn", "cotton fabric"),
    ),
    _row(
        "53",
        "vegetable textile fibres",
        _O,
        (0.15, 0.75),
        "[T] hemp bales 2.55–7.65 m³/t",
        ("jute", "hemp", "flax", "sisal", "linen"),
    ),
    _row(
        "54",
        "man-made filaments",
        _O,
        (0.15, 0.75),
        "[E] yarn on cones, fabric rolls 2–4 m³/t",
        ("polyester yarn", "nylon", "filament", "synthetic fabric"),
    ),
    _row(
        "55",
        "man-made staple fibres",
        _O,
        (0.15, 0.75),
        "[E] bales and rolls SF 2–4 m³/t",
        ("staple fibre", "viscose", "acrylic fibre"),
    ),
    _row(
        "56",
        "wadding, felt, ropes",
        _O,
        (0.05, 0.6),
        "[E] bales and coils SF 2–10 m³/t",
        ("rope", "twine", "net", "felt", "nonwoven"),
    ),
    _row("57", "carpets", _O, (0.15, 0.6), "[E] rolls SF 2.5–4 m³/t", ("carpet", "rug")),
    _row(
        "58",
        "special woven fabrics",
        _O,
        (0.12, 0.65),
        "[E] rolls SF 2–5 m³/t",
        ("lace", "embroidery", "ribbon", "label"),
    ),
    _row(
        "59",
        "coated and technical textiles",
        _O,
        (0.12, 0.75),
        "[E] rolls SF 1.8–5 m³/t",
        ("tarpaulin", "coated fabric", "conveyor belt"),
    ),
    _row("60", "knitted fabrics", _O, (0.1, 0.65), "[E] rolls SF 2–6 m³/t", ("knitted fabric",)),
    _row(
        "61",
        "knitted apparel",
        _O,
        (0.06, 0.45),
        "[E] cartons SF 3–8 m³/t",
        ("textile", "garment", "apparel", "clothing", "t-shirt", "shirt", "sweater", "hosiery"),
    ),
    _row(
        "62",
        "woven apparel",
        _O,
        (0.06, 0.45),
        "[E] cartons SF 3–8 m³/t",
        ("trouser", "jean", "jacket", "suit", "dress", "coat", "blouse"),
    ),
    _row(
        "63",
        "made-up textiles, used clothing",
        _O,
        (0.08, 0.7),
        "[E] bales SF 1.8–2.5; linen in cartons 3–6 m³/t",
        ("used clothing", "blanket", "towel", "bed linen", "curtain", "sack"),
    ),
    _row(
        "64",
        "footwear",
        _O,
        (0.06, 0.45),
        "[E] shoe boxes in cartons SF 4–8 m³/t",
        ("footwear", "shoe", "boot", "sandal", "sneaker", "slipper"),
    ),
    # --- stone, ceramics, glass (68–70) -----------------------------------------------------
    _row(
        "68",
        "stone, cement and mineral articles",
        _I,
        (0.5, 2.8),
        "[E] slabs SF 0.4–0.6, boards and wool 1.5–6 m³/t",
        ("granite", "marble", "stone slab", "plasterboard", "mineral wool", "abrasive"),
    ),
    _row(
        "69",
        "ceramic products",
        _I,
        (0.2, 2.0),
        "[E] tiles on pallets to sanitary ware",
        ("ceramic", "porcelain", "brick", "stoneware"),
    ),
    _row(
        "6907",
        "ceramic tiles",
        _I,
        (0.8, 2.2),
        "[E] boxes on pallets SF 0.6–0.9 m³/t",
        ("ceramic tile", "tile", "floor tile", "wall tile", "porcelain tile"),
    ),
    _row(
        "6910",
        "ceramic sanitary ware",
        _I,
        (0.15, 0.6),
        "[E] cartons SF 2.5–4 m³/t",
        ("toilet", "washbasin", "sink", "sanitary ware", "bidet"),
    ),
    _row(
        "6911",
        "ceramic tableware",
        _I,
        (0.2, 0.8),
        "[E] cartons SF 2–3.5 m³/t",
        ("tableware", "dinnerware", "crockery", "mug", "ceramic plate"),
    ),
    _row(
        "70",
        "glass and glassware",
        _I,
        (0.2, 2.0),
        "[E] bottles in cartons to sheet glass",
        ("glass", "glassware"),
    ),
    _row(
        "7005",
        "float and sheet glass",
        _I,
        (0.9, 2.6),
        "[E] crates and racks SF 0.4–0.8 m³/t",
        ("float glass", "sheet glass", "glass sheet", "glass pane"),
    ),
    _row(
        "7010",
        "glass bottles and jars",
        _I,
        (0.15, 0.75),
        "[E] pallets/cartons SF 2–4 m³/t",
        ("glass bottle", "glass jar", "bottle", "jar"),
    ),
    # --- base metals (72–83) ----------------------------------------------------------------
    _row(
        "72",
        "iron and steel",
        _M,
        (0.5, 4.5),
        "[W] steel products 0.3–0.6 m³/t",
        ("steel", "iron", "steel coil", "steel sheet", "steel bar", "rebar", "steel billet"),
    ),
    _row(
        "7204",
        "ferrous scrap",
        _M,
        (0.25, 2.0),
        "[E] loose HMS/shredded SF 0.6–2.5 m³/t",
        ("scrap", "scrap steel", "steel scrap", "scrap iron", "ferrous scrap", "waste metal"),
    ),
    _row(
        "73",
        "articles of iron or steel",
        _IM,
        (0.2, 3.5),
        "[W] steel products; pipes [E]",
        ("pipe", "tube", "steel structure", "screw", "bolt", "nut and bolt", "nail", "chain"),
    ),
    _row(
        "74",
        "copper and copper articles",
        _M,
        (0.8, 4.8),
        "[S] lead ingots 0.31 m³/t ~ dense",
        ("copper", "brass", "bronze", "copper cathode"),
    ),
    _row(
        "7408",
        "copper wire",
        _M,
        (1.0, 4.0),
        "[E] coils and reels SF 0.3–0.6 m³/t",
        ("copper wire", "copper rod", "copper cable"),
    ),
    _row(
        "76",
        "aluminium and aluminium articles",
        _IM,
        (0.2, 2.4),
        "[E] profiles, sheet, foil SF 0.5–3 m³/t",
        ("aluminium", "aluminum", "aluminium profile", "aluminium sheet", "aluminium foil"),
    ),
    _row(
        "7601",
        "unwrought aluminium",
        _IM,
        (0.9, 2.4),
        "[E] ingot bundles SF 0.45–0.7 m³/t",
        ("aluminium ingot", "aluminum ingot", "unwrought aluminium", "aluminium billet"),
    ),
    _row(
        "82",
        "tools and cutlery",
        _IM,
        (0.4, 2.0),
        "[E] cartons on pallets SF 0.6–1.5 m³/t",
        ("tool", "hand tool", "spanner", "wrench", "cutlery", "knife", "blade", "drill bit"),
    ),
    _row(
        "83",
        "miscellaneous base-metal articles",
        _IM,
        (0.3, 2.0),
        "[E] cartons SF 0.6–2.5 m³/t",
        ("lock", "padlock", "hinge", "fitting", "safe"),
    ),
    # --- machinery, electrical, vehicles, instruments (84–90) -------------------------------
    _row(
        "84",
        "machinery and mechanical appliances",
        _OIM,
        (0.12, 1.6),
        "[W] steel products; crated machinery SF 0.8–5 m³/t [E]",
        ("machinery", "machine", "pump", "engine", "compressor", "spare part", "equipment"),
    ),
    _row(
        "8402",
        "steam boilers",
        _M,
        (0.2, 1.4),
        "[E] crated steel vessels SF 1–4 m³/t",
        ("boiler", "steam boiler"),
    ),
    _row(
        "8418",
        "refrigerators and freezers",
        _OIM,
        (0.06, 0.35),
        "[E] cartons SF 4–10 m³/t",
        ("refrigerator", "fridge", "freezer", "cooler"),
    ),
    _row(
        "8450",
        "washing machines",
        _OIM,
        (0.08, 0.4),
        "[E] cartons SF 3.5–8 m³/t",
        ("washing machine", "washer"),
    ),
    _row(
        "8471",
        "computers",
        _OIM,
        (0.08, 0.5),
        "[E] cartons SF 3–8 m³/t; desktops and servers are mostly their steel chassis",
        ("computer", "laptop", "notebook", "server", "tablet", "keyboard"),
    ),
    _row(
        "85",
        "electrical and electronic equipment",
        _OIM,
        (0.08, 0.9),
        "[E] cartons SF 2–8 m³/t",
        ("electronic", "electrical", "appliance", "charger"),
    ),
    _row(
        "8507",
        "batteries",
        _IM,
        (0.8, 3.0),
        "[S] lead ingots 0.31 m³/t; packed cells [E]",
        ("battery", "accumulator", "lead acid battery", "lithium battery"),
    ),
    _row(
        "8517",
        "telephones and network equipment",
        _OI,
        (0.08, 0.5),
        "[E] cartons 3–8 m³/t",
        ("mobile phone", "smartphone", "telephone", "router", "phone"),
    ),
    _row(
        "8528",
        "monitors and televisions",
        _OI,
        (0.06, 0.35),
        "[E] cartons SF 4–10 m³/t",
        ("television", "tv", "monitor", "display"),
    ),
    _row(
        "8544",
        "insulated wire and cable",
        _OM,
        (0.5, 2.5),
        "[E] drums and reels SF 0.5–1.5 m³/t",
        ("cable", "insulated wire", "electric cable", "wire harness"),
    ),
    _row(
        "87",
        "vehicles and parts",
        _OIM,
        (0.05, 1.2),
        "[E] vehicles SF 5–12; parts 1–3 m³/t",
        ("vehicle", "auto part", "car part", "trailer", "tractor"),
    ),
    _row(
        "8703",
        "motor cars",
        _OIM,
        (0.05, 0.35),
        "[E] 1–2 cars per container, 5–12 m³/t",
        ("car", "motor car", "automobile", "suv", "used car", "sedan"),
    ),
    _row(
        "8708",
        "motor vehicle parts",
        _OIM,
        (0.3, 1.8),
        "[E] crates and cartons SF 0.8–2.5 m³/t",
        ("auto part", "car part", "brake", "gearbox", "axle", "bumper"),
    ),
    _row(
        "8711",
        "motorcycles",
        _OIM,
        (0.04, 0.3),
        "[E] crated SF 5–15 m³/t",
        ("motorcycle", "scooter", "moped", "motorbike"),
    ),
    _row("8712", "bicycles", _OM, (0.03, 0.25), "[E] cartons SF 6–20 m³/t", ("bicycle", "bike")),
    _row(
        "90",
        "optical, medical and measuring instruments",
        _OIM,
        (0.06, 0.6),
        "[E] cartons SF 2–10 m³/t",
        ("instrument", "medical device", "optical", "lens", "camera", "meter"),
    ),
    # --- furniture, toys, miscellaneous (94–96) ---------------------------------------------
    _row(
        "94",
        "furniture, bedding, lamps",
        _OM,
        (0.04, 0.55),
        "[E] flat-pack SF 2–4; assembled 5–20",
        ("furniture", "chair", "table", "sofa", "cabinet", "mattress", "lamp", "bed"),
    ),
    _row(
        "9404",
        "mattresses and bedding",
        _O,
        (0.03, 0.3),
        "[E] compressed rolls SF 3–25 m³/t",
        ("mattress", "pillow", "duvet", "quilt", "sleeping bag"),
    ),
    _row(
        "95",
        "toys, games, sports goods",
        _OI,
        (0.05, 0.45),
        "[E] cartons SF 3–10 m³/t",
        ("toy", "game", "doll", "sports good", "ball", "fitness equipment"),
    ),
    _row(
        "96",
        "miscellaneous manufactured articles",
        _OI,
        (0.08, 0.7),
        "[E] cartons SF 2–8 m³/t",
        ("brush", "pen", "button", "zipper", "lighter", "diaper", "broom"),
    ),
)

#: Every row by its code (2, 4 or 6 digits).
HS_TABLE: dict[str, HsExpectation] = {r.heading: r for r in _ROWS}

_NON_DIGIT = re.compile(r"[.\s]")
_WORD = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def normalise_hs(code: str) -> str:
    """An HS code with its dots and spaces removed: ``"0202.30"`` → ``"020230"``.

    Args:
        code: The code as written on a declaration.

    Returns:
        The digits, unchanged otherwise (validation is the GD parser's).
    """
    return _NON_DIGIT.sub("", code)


def expectation(hs_code: str) -> HsExpectation | None:
    """The most specific row for an HS code: subheading, then heading, then chapter.

    Args:
        hs_code: 2 to 10 digits; dots and spaces are ignored (``"6907.21"``).

    Returns:
        The row, or None when neither the code's subheading, heading nor chapter is in the
        table (the caller reports the commodity as unknown).
    """
    code = normalise_hs(hs_code)
    for n in (6, 4, 2):
        if len(code) >= n and code[:n] in HS_TABLE:
            return HS_TABLE[code[:n]]
    return None


def _singular(word: str) -> str:
    if len(word) <= 3 or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes", "oes")):
        return word[:-2]
    if word.endswith("s"):
        return word[:-1]
    return word


#: American spellings read as the British ones the table uses.
_SPELLING = {"aluminum": "aluminium", "tire": "tyre", "fiber": "fibre"}


def _tokens(text: str) -> tuple[str, ...]:
    words = (_singular(w) for w in _WORD.findall(text.lower()))
    return tuple(_SPELLING.get(w, w) for w in words)


_KEYWORDS: tuple[tuple[frozenset[str], int, HsExpectation], ...] = tuple(
    (frozenset(_tokens(k)), len(_tokens(k)), r) for r in _ROWS for k in r.keywords
)


def match_text(text: str) -> HsExpectation | None:
    """The row whose keywords best match a free-text commodity name.

    Case-insensitive; plurals and extra words are tolerated ("glazed ceramic floor
    tiles" and "Ceramic Tiles" both give 6907).  A keyword phrase matches when all its
    words occur in the text; the phrase with the most words wins, then the more specific
    row (heading over chapter).

    Args:
        text: The declared commodity as written.

    Returns:
        The best row, or None when no keyword occurs in the text.
    """
    words = set(_tokens(text))
    best: tuple[int, int, int] | None = None
    found: HsExpectation | None = None
    for i, (kw, n, row) in enumerate(_KEYWORDS):
        if kw <= words:
            # most words, then most specific row, then the earlier row of the table
            key = (n, len(row.heading), -i)
            if best is None or key > best:
                best, found = key, row
    return found
