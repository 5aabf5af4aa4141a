#!/usr/bin/env python3
"""Generates data/demo/music.sql: an invented music-streaming database.

Every artist, album, track, label and number here is made up. The script is
deterministic (fixed seed, no set iteration, no clock), so running it again
reproduces music.sql byte for byte:

    python3 data/demo/generate.py > data/demo/music.sql
"""

import random
import sys

SEED = 20240611

# (name, country, genre, formed_year); formed_year is the debut year for solo
# artists and None when unknown.
ARTISTS = [
    ("The Paper Lanterns", "United Kingdom", "indie", 2009),
    ("Nova Kestrel", "United States", "pop", 2015),
    ("Velvet Harbor", "Sweden", "electronic", 2012),
    ("Mara Quell", "Canada", "r&b", 2016),
    ("Iron Meridian", "Germany", "metal", 2001),
    ("Juniper & Ash", "Ireland", "folk", 2013),
    ("Lil Cascade", "United States", "hip hop", 2017),
    ("Sol Marquez", "Mexico", "latin", 2014),
    ("Hana Seo", "South Korea", "k-pop", 2018),
    ("The Quiet Engines", "United States", "rock", 1998),
    ("Aurora Vale", "Norway", "pop", 2019),
    ("Deltawave", "Netherlands", "electronic", 2010),
    ("Kofi Adeyemi", "Nigeria", "afrobeats", 2016),
    ("Blue Mesa Trio", "United States", "jazz", 1994),
    ("Ruby Holloway", "United States", "country", 2008),
    ("Static Bloom", "Australia", "indie", 2014),
    ("Lucas Ferrante", "Brazil", "latin", 2012),
    ("Midnight Cartographers", "United Kingdom", "rock", 2004),
    ("Yuki Tanabe", "Japan", "pop", 2011),
    ("Cinder Sky", "Canada", "rock", 2007),
    ("Orchid Circuit", "South Korea", "k-pop", 2020),
    ("Tessa Marlowe", "Australia", "pop", 2017),
    ("Grey Fox Revival", "United States", "country", 2003),
    ("Neon Atlas", "Germany", "electronic", 2015),
    ("Ezra Blackwood", "United Kingdom", "folk", 2010),
    ("Coastal Sirens", "United States", "indie", 2016),
    ("DJ Solenne", "France", "electronic", 2013),
    ("The Hollow Pines", "Canada", "folk", None),
    ("Marcus Vell", "United States", "r&b", 2012),
    ("Emberline", "Sweden", "pop", 2016),
    ("Rio Calma", "Spain", "latin", 2018),
    ("Northbound Static", "Ireland", "rock", 2000),
    ("Jade Okafor", "Nigeria", "afrobeats", 2019),
    ("The Velour Sessions", "France", "jazz", 2006),
    ("Crimson Vault", "United States", "metal", 1996),
    ("Skye Rowan", "United Kingdom", "pop", 2020),
    ("Young Meteor", "United States", "hip hop", 2019),
    ("Lumen Drift", "Japan", "electronic", None),
    ("Saltmarsh Choir", "Norway", "folk", 2005),
    ("Kai Moreno", "Mexico", "latin", 2021),
]

LABELS = [
    "Harborlight Records",
    "Blue Shell Music",
    "Northwire",
    "Sundial Recordings",
    "Polar Tide",
    "Greenroom Audio",
    "Kite & Key",
    "Meridian Sound",
]

# Per genre: (bpm range, duration range in s, energy, danceability, valence,
# acousticness centres in 0..1, chance a track is explicit).
GENRE_SHAPE = {
    "pop": ((95, 130), (160, 230), 0.68, 0.70, 0.60, 0.15, 0.10),
    "rock": ((100, 160), (190, 300), 0.80, 0.45, 0.45, 0.08, 0.12),
    "indie": ((85, 135), (180, 270), 0.58, 0.52, 0.45, 0.35, 0.05),
    "electronic": ((118, 132), (200, 380), 0.82, 0.74, 0.50, 0.04, 0.03),
    "r&b": ((70, 105), (170, 260), 0.52, 0.68, 0.48, 0.25, 0.30),
    "hip hop": ((80, 150), (140, 240), 0.66, 0.78, 0.50, 0.12, 0.75),
    "latin": ((90, 110), (170, 240), 0.74, 0.80, 0.70, 0.18, 0.15),
    "k-pop": ((100, 140), (170, 220), 0.80, 0.72, 0.62, 0.08, 0.02),
    "metal": ((110, 190), (220, 420), 0.93, 0.35, 0.30, 0.01, 0.25),
    "jazz": ((60, 140), (240, 480), 0.38, 0.50, 0.52, 0.78, 0.00),
    "country": ((75, 125), (180, 250), 0.60, 0.58, 0.62, 0.40, 0.02),
    "folk": ((70, 120), (180, 300), 0.35, 0.45, 0.42, 0.82, 0.01),
    "afrobeats": ((95, 115), (170, 230), 0.70, 0.82, 0.72, 0.15, 0.20),
}

MARKETS = [
    "United States",
    "United Kingdom",
    "Germany",
    "Brazil",
    "Mexico",
    "Japan",
    "South Korea",
    "Australia",
    "Sweden",
    "Nigeria",
    "Canada",
    "France",
]

MONTHS = [f"2024-{m:02d}" for m in range(1, 13)]

ADJECTIVES = [
    "Silver", "Electric", "Paper", "Hollow", "Golden", "Quiet", "Neon", "Velvet",
    "Broken", "Midnight", "Crystal", "Wild", "Distant", "Burning", "Frozen",
    "Hidden", "Lonely", "Scarlet", "Gentle", "Restless", "Faded", "Northern",
    "Endless", "Amber", "Secret", "Shallow", "Copper", "Sleepless", "Open", "Hazy",
]
NOUNS = [
    "Rivers", "Skylines", "Letters", "Harbors", "Echoes", "Engines", "Gardens",
    "Satellites", "Windows", "Mirrors", "Highways", "Fires", "Oceans", "Streets",
    "Signals", "Shadows", "Summers", "Horizons", "Lanterns", "Thunder", "Daydreams",
    "Circles", "Islands", "Waves", "Stations", "Meadows", "Comets", "Bridges",
    "Tides", "Voices",
]
SINGULAR = [
    "Heart", "Light", "Road", "Sky", "Night", "Fire", "Rain", "Moon", "Dream",
    "Song", "Storm", "Tide", "Flame", "Line", "Wave", "Door", "Star", "Shore",
    "Echo", "Room",
]
VERBS = [
    "Falling", "Running", "Dancing", "Waiting", "Chasing", "Burning", "Holding",
    "Drifting", "Calling", "Breaking", "Fading", "Rising", "Dreaming", "Leaving",
]
PREPS = ["Into the", "Under the", "Across the", "After the", "Beyond the", "Over the"]


def plural(word):
    irregular = {"Sky": "Skies", "Echo": "Echoes"}
    return irregular.get(word, word + "s")


def clamp(x, lo=0.0, hi=1.0):
    return max(lo, min(hi, x))


def sql_str(s):
    return "'" + s.replace("'", "''") + "'"


def sql_val(v):
    if v is None:
        return "NULL"
    if isinstance(v, str):
        return sql_str(v)
    return str(v)


class Titles:
    """Unique invented titles."""

    def __init__(self, rng):
        self.rng = rng
        self.used = set()

    def album(self):
        patterns = [
            lambda r: f"{r.choice(ADJECTIVES)} {r.choice(NOUNS)}",
            lambda r: f"{r.choice(NOUNS)} of {r.choice(NOUNS)}",
            lambda r: f"{r.choice(PREPS)} {r.choice(SINGULAR)}",
            lambda r: f"The {r.choice(ADJECTIVES)} {r.choice(SINGULAR)}",
        ]
        return self._unique(patterns)

    def track(self):
        patterns = [
            lambda r: f"{r.choice(ADJECTIVES)} {r.choice(SINGULAR)}",
            lambda r: f"{r.choice(VERBS)} {r.choice(PREPS).split()[0]} {r.choice(NOUNS)}",
            lambda r: f"{r.choice(VERBS)} {r.choice(SINGULAR)}",
            lambda r: f"{r.choice(SINGULAR)} of {r.choice(NOUNS)}",
            lambda r: f"{r.choice(ADJECTIVES)} {r.choice(NOUNS)}",
            lambda r: f"{r.choice(PREPS)} {r.choice(SINGULAR)}",
            lambda r: f"{plural(r.choice(SINGULAR))} and {r.choice(NOUNS)}",
        ]
        return self._unique(patterns)

    def _unique(self, patterns):
        while True:
            t = self.rng.choice(patterns)(self.rng)
            if t not in self.used:
                self.used.add(t)
                return t


def generate(rng):
    titles = Titles(rng)

    # Artist popularity: a base that tracks inherit (so top artists stay top).
    artists = []
    for i, (name, country, genre, formed) in enumerate(ARTISTS, start=1):
        base_pop = rng.randint(35, 85)
        artists.append((i, name, country, formed, genre, base_pop))

    # 90 albums: one per artist, 50 more spread with a bias to older acts.
    counts = [1] * len(artists)
    weights = [max(1, 2025 - (a[3] or 2012)) for a in artists]
    for _ in range(90 - len(artists)):
        k = rng.choices(range(len(artists)), weights=weights)[0]
        counts[k] += 1

    albums = []
    for (artist_id, _, _, formed, _, _), n in zip(artists, counts):
        start = formed or 2010
        years = sorted(rng.randint(start, 2024) for _ in range(n))
        for year in years:
            label = None if rng.random() < 0.08 else rng.choice(LABELS)
            albums.append([artist_id, titles.album(), year, label])
    albums.sort(key=lambda a: (a[2], a[0], a[1]))
    albums = [(i, *a) for i, a in enumerate(albums, start=1)]

    tracks = []
    by_artist = {a[0]: a for a in artists}
    for album_id, artist_id, _, year, _ in albums:
        _, _, _, _, genre, base_pop = by_artist[artist_id]
        bpm_r, dur_r, en, da, va, ac, ex = GENRE_SHAPE[genre]
        for _ in range(rng.randint(3, 8)):
            track_genre = genre
            if rng.random() < 0.1:
                track_genre = rng.choice(sorted(GENRE_SHAPE))
            age_penalty = (2024 - year) * 0.8
            popularity = int(clamp(rng.gauss(base_pop - age_penalty, 9), 0, 100))
            tracks.append(
                (
                    len(tracks) + 1,
                    album_id,
                    titles.track(),
                    rng.randint(*dur_r),
                    rng.randint(*bpm_r),
                    round(clamp(rng.gauss(en, 0.1)), 2),
                    round(clamp(rng.gauss(da, 0.1)), 2),
                    round(clamp(rng.gauss(va, 0.15)), 2),
                    round(clamp(rng.gauss(ac, 0.1)), 2),
                    popularity,
                    1 if rng.random() < ex else 0,
                    track_genre,
                    year,
                )
            )

    streams = []
    for t in tracks:
        track_id, album_id, popularity = t[0], t[1], t[9]
        if popularity < 30 or rng.random() < 0.2:
            continue
        artist_country = by_artist[albums[album_id - 1][1]][2]
        markets = [m for m in MARKETS if m == artist_country]
        others = [m for m in MARKETS if m != artist_country]
        markets += rng.sample(others, rng.randint(1, 3))
        first = rng.randint(0, 8)
        last = rng.randint(first + 2, 11)
        for market in markets:
            scale = 1.0 if market == artist_country else 0.35
            for month in MONTHS[first : last + 1]:
                volume = int(
                    10 ** (2.5 + popularity / 25) * scale * rng.uniform(0.6, 1.4)
                )
                streams.append((track_id, market, month, volume))
    streams.sort(key=lambda s: (s[0], s[2], s[1]))
    return artists, albums, tracks, streams


SCHEMA = """\
CREATE TABLE artists (
  artist_id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  country TEXT NOT NULL,
  formed_year INTEGER,
  genre TEXT NOT NULL
);
CREATE TABLE albums (
  album_id INTEGER PRIMARY KEY,
  artist_id INTEGER NOT NULL REFERENCES artists(artist_id),
  title TEXT NOT NULL,
  release_year INTEGER NOT NULL,
  label TEXT
);
CREATE TABLE tracks (
  track_id INTEGER PRIMARY KEY,
  album_id INTEGER NOT NULL REFERENCES albums(album_id),
  title TEXT NOT NULL,
  duration_s INTEGER NOT NULL,
  bpm INTEGER NOT NULL,
  energy REAL NOT NULL,
  danceability REAL NOT NULL,
  valence REAL NOT NULL,
  acousticness REAL NOT NULL,
  popularity INTEGER NOT NULL,
  explicit INTEGER NOT NULL,
  genre TEXT NOT NULL,
  year INTEGER NOT NULL
);
CREATE TABLE streams (
  track_id INTEGER NOT NULL REFERENCES tracks(track_id),
  country TEXT NOT NULL,
  month TEXT NOT NULL,
  streams INTEGER NOT NULL,
  PRIMARY KEY (track_id, country, month)
);
CREATE INDEX albums_artist ON albums(artist_id);
CREATE INDEX tracks_album ON tracks(album_id);
"""


def main():
    rng = random.Random(SEED)
    artists, albums, tracks, streams = generate(rng)
    out = sys.stdout
    out.write("-- Invented sample data for sqlagent (artists, albums, tracks and\n")
    out.write("-- monthly streams are all made up). Generated by data/demo/generate.py\n")
    out.write(f"-- with seed {SEED}; do not edit by hand.\n")
    out.write("BEGIN TRANSACTION;\n")
    out.write(SCHEMA)
    rows = [
        ("artists", [a[:5] for a in artists]),
        ("albums", albums),
        ("tracks", tracks),
        ("streams", streams),
    ]
    for table, values in rows:
        for v in values:
            out.write(f"INSERT INTO {table} VALUES({','.join(sql_val(x) for x in v)});\n")
    out.write("COMMIT;\n")
    print(
        f"artists {len(artists)}, albums {len(albums)}, tracks {len(tracks)}, "
        f"streams {len(streams)}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
