//! Ways to spoil a good file, as proptest strategies: edits of the bytes
//! (truncated, bit-flipped, numbers that length fields are made of,
//! repeated or inserted runs), of a JSON document's values (replaced by
//! hostile values, nested deep, removed, grown), and of a GGUF file's
//! metadata values.

use candle_core::quantized::gguf_file::Value as GgufValue;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value as Json;

/// Numbers that a length, count or offset field might be set to.
const NUMBERS: [u64; 14] = [
    0,
    1,
    2,
    0x7f,
    0xff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    1 << 32,
    1 << 40,
    1 << 62,
    i64::MAX as u64,
    u64::MAX - 7,
    u64::MAX,
];

fn number() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => proptest::sample::select(&NUMBERS[..]),
        1 => any::<u64>(),
        1 => 0u64..4096,
    ]
}

/// One edit of a file's bytes.
#[derive(Debug, Clone)]
pub enum ByteEdit {
    /// Keep only the bytes before this point.
    Truncate(Index),
    /// Flip one bit.
    Flip(Index, u8),
    /// Write a little-endian number of 1, 2, 4 or 8 bytes here.
    Number(Index, u8, u64),
    /// Repeat the run of `len` bytes here `times` times.
    Repeat(Index, usize, usize),
    /// Insert these bytes here.
    Insert(Index, Vec<u8>),
    /// Delete up to this many bytes here.
    Delete(Index, usize),
}

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    prop_oneof![
        2 => any::<Index>().prop_map(ByteEdit::Truncate),
        4 => (any::<Index>(), 0u8..8).prop_map(|(at, bit)| ByteEdit::Flip(at, bit)),
        4 => (any::<Index>(), proptest::sample::select(&[1u8, 2, 4, 8][..]), number())
            .prop_map(|(at, width, n)| ByteEdit::Number(at, width, n)),
        1 => (any::<Index>(), 1usize..64, 2usize..2048)
            .prop_map(|(at, len, times)| ByteEdit::Repeat(at, len, times)),
        1 => (any::<Index>(), proptest::collection::vec(any::<u8>(), 1..32))
            .prop_map(|(at, bytes)| ByteEdit::Insert(at, bytes)),
        1 => (any::<Index>(), 1usize..64).prop_map(|(at, len)| ByteEdit::Delete(at, len)),
    ]
}

/// One to four byte edits, applied in turn.
pub fn byte_edits() -> impl Strategy<Value = Vec<ByteEdit>> {
    proptest::collection::vec(byte_edit(), 1..=4)
}

/// Applies `edits` to `bytes`.
pub fn apply_bytes(bytes: &mut Vec<u8>, edits: &[ByteEdit]) {
    for edit in edits {
        let len = bytes.len();
        let at = |i: &Index| if len == 0 { 0 } else { i.index(len) };
        match edit {
            ByteEdit::Truncate(i) => bytes.truncate(at(i)),
            ByteEdit::Flip(i, bit) if len > 0 => bytes[at(i)] ^= 1 << bit,
            ByteEdit::Flip(..) => {}
            ByteEdit::Number(i, width, n) => {
                let width = usize::from(*width);
                let start = at(i).min(len.saturating_sub(width));
                let le = n.to_le_bytes();
                for (k, b) in le[..width].iter().enumerate() {
                    if let Some(slot) = bytes.get_mut(start + k) {
                        *slot = *b;
                    }
                }
            }
            ByteEdit::Repeat(i, run, times) => {
                let start = at(i);
                let end = (start + run).min(len);
                let piece = bytes[start..end].to_vec();
                let grown: Vec<u8> = piece.repeat(*times);
                bytes.splice(start..end, grown);
            }
            ByteEdit::Insert(i, more) => {
                let start = at(i);
                bytes.splice(start..start, more.iter().copied());
            }
            ByteEdit::Delete(i, n) => {
                let start = at(i);
                let end = (start + n).min(len);
                bytes.drain(start..end);
            }
        }
    }
}

/// A value put where a good one was.
#[derive(Debug, Clone)]
pub enum Hostile {
    Null,
    Bool(bool),
    Integer(i64),
    Unsigned(u64),
    Float(f64),
    /// A string of this many characters (`x`, or a template-looking run).
    Text(usize, bool),
    /// Control characters, a lone surrogate escape and odd Unicode.
    Odd,
    EmptyArray,
    EmptyObject,
    /// An array of this many zeros.
    Zeros(usize),
}

fn hostile() -> impl Strategy<Value = Hostile> {
    prop_oneof![
        Just(Hostile::Null),
        any::<bool>().prop_map(Hostile::Bool),
        proptest::sample::select(&[0i64, -1, -2, 1, i32::MAX as i64, i64::MIN, i64::MAX][..])
            .prop_map(Hostile::Integer),
        number().prop_map(Hostile::Unsigned),
        proptest::sample::select(&[0.5, -1.5, 1e308, -1e308, 1e-320, 3e9][..])
            .prop_map(Hostile::Float),
        (
            proptest::sample::select(&[0usize, 1, 1000, 1 << 16, 1 << 20][..]),
            any::<bool>()
        )
            .prop_map(|(n, t)| Hostile::Text(n, t)),
        Just(Hostile::Odd),
        Just(Hostile::EmptyArray),
        Just(Hostile::EmptyObject),
        proptest::sample::select(&[1usize, 1000, 100_000][..]).prop_map(Hostile::Zeros),
    ]
}

impl Hostile {
    fn json(&self) -> Json {
        match self {
            Hostile::Null => Json::Null,
            Hostile::Bool(b) => Json::Bool(*b),
            Hostile::Integer(n) => Json::from(*n),
            Hostile::Unsigned(n) => Json::from(*n),
            Hostile::Float(x) => Json::from(*x),
            Hostile::Text(n, false) => Json::String("x".repeat(*n)),
            Hostile::Text(n, true) => Json::String("{{ {% {# ".repeat(n / 9 + 1)),
            Hostile::Odd => Json::String("\u{0}\u{1}\u{7f}\u{feff}\u{10ffff}\n\r\t\"'\\".into()),
            Hostile::EmptyArray => Json::Array(vec![]),
            Hostile::EmptyObject => Json::Object(Default::default()),
            Hostile::Zeros(n) => Json::Array(vec![Json::from(0); *n]),
        }
    }
}

/// One edit of a JSON document (or of one line of a JSON Lines file).
#[derive(Debug, Clone)]
pub enum JsonEdit {
    /// Put a hostile value at the chosen node.
    Replace(Index, Hostile),
    /// Wrap the chosen node in this many arrays (or objects).
    Nest(Index, usize, bool),
    /// Remove the chosen node from its parent.
    Remove(Index),
    /// Repeat the elements of the chosen array (or the text of the chosen
    /// string) this many times.
    Grow(Index, usize),
    /// A whole-text edit after the structure is written out.
    Bytes(Vec<ByteEdit>),
}

/// One or two JSON edits.
pub fn json_edits() -> impl Strategy<Value = Vec<JsonEdit>> {
    let edit = prop_oneof![
        4 => (any::<Index>(), hostile()).prop_map(|(at, h)| JsonEdit::Replace(at, h)),
        2 => (any::<Index>(), proptest::sample::select(&[2usize, 100, 200, 10_000, 200_000][..]), any::<bool>())
            .prop_map(|(at, depth, object)| JsonEdit::Nest(at, depth, object)),
        2 => any::<Index>().prop_map(JsonEdit::Remove),
        1 => (any::<Index>(), proptest::sample::select(&[2usize, 100, 10_000][..]))
            .prop_map(|(at, n)| JsonEdit::Grow(at, n)),
        3 => byte_edits().prop_map(JsonEdit::Bytes),
    ];
    proptest::collection::vec(edit, 1..=2)
}

/// JSON pointers of every node of `value` except the root.
fn pointers(value: &Json, here: String, out: &mut Vec<String>) {
    match value {
        Json::Array(items) => {
            for (k, item) in items.iter().enumerate() {
                let p = format!("{here}/{k}");
                out.push(p.clone());
                pointers(item, p, out);
            }
        }
        Json::Object(map) => {
            for (key, item) in map {
                let p = format!("{here}/{}", key.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                pointers(item, p, out);
            }
        }
        _ => {}
    }
}

/// The most text one grown value may take (an oversized file, not one
/// that fills the machine).
const GROWN_AT_MOST: usize = 16 << 20;

/// The text nested values stand in for until the document is written.
const NEST_MARK: &str = "\u{1}nest-here\u{1}";

/// Applies `edits` to the JSON text `text`; `lines` for JSON Lines (each
/// line a document; edits pick among all lines' nodes).
pub fn apply_json(text: &str, edits: &[JsonEdit], lines: bool) -> Vec<u8> {
    let mut docs: Json = if lines {
        Json::Array(
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).expect("seed line is JSON"))
                .collect(),
        )
    } else {
        serde_json::from_str(text).expect("seed is JSON")
    };
    let mut nests = Vec::new();
    let mut byte_edits = Vec::new();
    for edit in edits {
        let mut all = Vec::new();
        pointers(&docs, String::new(), &mut all);
        // Lines themselves are not removed or replaced as a whole: their
        // contents are.
        if lines {
            all.retain(|p| p.matches('/').count() > 1);
        }
        let pick = |i: &Index| (!all.is_empty()).then(|| all[i.index(all.len())].clone());
        match edit {
            JsonEdit::Replace(i, h) => {
                if let Some(p) = pick(i) {
                    *docs.pointer_mut(&p).unwrap() = h.json();
                }
            }
            JsonEdit::Nest(i, depth, object) => {
                if let Some(p) = pick(i) {
                    let inner = docs.pointer_mut(&p).unwrap().take();
                    let inner = serde_json::to_string(&inner).unwrap();
                    let (open, close) = if *object {
                        ("{\"a\":", "}")
                    } else {
                        ("[", "]")
                    };
                    let text = format!("{}{inner}{}", open.repeat(*depth), close.repeat(*depth));
                    *docs.pointer_mut(&p).unwrap() =
                        Json::String(format!("{NEST_MARK}{}", nests.len()));
                    nests.push(text);
                }
            }
            JsonEdit::Remove(i) => {
                if let Some(p) = pick(i) {
                    let (parent, last) = p.rsplit_once('/').unwrap();
                    match docs.pointer_mut(parent) {
                        Some(Json::Array(items)) => {
                            let k: usize = last.parse().unwrap();
                            items.remove(k);
                        }
                        Some(Json::Object(map)) => {
                            map.remove(&last.replace("~1", "/").replace("~0", "~"));
                        }
                        _ => {}
                    }
                }
            }
            JsonEdit::Grow(i, n) => {
                if let Some(p) = pick(i) {
                    // Grown to at most GROWN_AT_MOST bytes of text.
                    match docs.pointer_mut(&p).unwrap() {
                        Json::Array(items) => {
                            let size = serde_json::to_string(items).unwrap().len().max(1);
                            let copy = items.clone();
                            for _ in 1..(*n).min(GROWN_AT_MOST / size).max(1) {
                                items.extend(copy.iter().cloned());
                            }
                        }
                        Json::String(s) => {
                            *s = s.repeat((*n).min(GROWN_AT_MOST / s.len().max(1)).max(1))
                        }
                        _ => {}
                    }
                }
            }
            JsonEdit::Bytes(b) => byte_edits.extend(b.iter().cloned()),
        }
    }
    let mut out = if lines {
        let Json::Array(items) = &docs else {
            unreachable!()
        };
        items
            .iter()
            .map(|d| serde_json::to_string(d).unwrap() + "\n")
            .collect::<String>()
    } else {
        serde_json::to_string_pretty(&docs).unwrap()
    };
    for (k, nested) in nests.iter().enumerate() {
        let mark = serde_json::to_string(&format!("{NEST_MARK}{k}")).unwrap();
        out = out.replacen(&mark, nested, 1);
    }
    let mut bytes = out.into_bytes();
    apply_bytes(&mut bytes, &byte_edits);
    bytes
}

/// One edit of a GGUF file's metadata.
#[derive(Debug, Clone)]
pub enum GgufEdit {
    /// Give the chosen key a hostile value.
    Value(Index, GgufHostile),
    /// Drop the chosen key.
    Drop(Index),
}

/// A value for a GGUF metadata key.
#[derive(Debug, Clone)]
pub enum GgufHostile {
    U32(u64),
    U64(u64),
    I32(i32),
    F32(f32),
    Bool(bool),
    /// A string of this many `x`.
    Text(usize),
    /// An array of this many `u32` zeros.
    Zeros(usize),
    /// Arrays nested this deep.
    Nested(usize),
    /// The chosen key's array with its elements repeated this many times.
    Grown(usize),
}

fn gguf_hostile() -> impl Strategy<Value = GgufHostile> {
    prop_oneof![
        number().prop_map(GgufHostile::U32),
        number().prop_map(GgufHostile::U64),
        proptest::sample::select(&[-1i32, i32::MIN, 0][..]).prop_map(GgufHostile::I32),
        proptest::sample::select(&[0.0f32, -1.0, f32::NAN, f32::INFINITY, 1e30][..])
            .prop_map(GgufHostile::F32),
        any::<bool>().prop_map(GgufHostile::Bool),
        proptest::sample::select(&[0usize, 1000, 1 << 20][..]).prop_map(GgufHostile::Text),
        proptest::sample::select(&[0usize, 1, 100_000][..]).prop_map(GgufHostile::Zeros),
        proptest::sample::select(&[2usize, 64, 1000][..]).prop_map(GgufHostile::Nested),
        proptest::sample::select(&[2usize, 50][..]).prop_map(GgufHostile::Grown),
    ]
}

/// One to three metadata edits, and sometimes byte edits of the file.
pub fn gguf_edits() -> impl Strategy<Value = (Vec<GgufEdit>, Vec<ByteEdit>)> {
    let edit = prop_oneof![
        4 => (any::<Index>(), gguf_hostile()).prop_map(|(at, h)| GgufEdit::Value(at, h)),
        1 => any::<Index>().prop_map(GgufEdit::Drop),
    ];
    (
        proptest::collection::vec(edit, 1..=3),
        proptest::collection::vec(byte_edit(), 0..=1),
    )
}

/// Applies `edits` to metadata entries `metadata`.
pub fn apply_gguf(metadata: &mut Vec<(String, GgufValue)>, edits: &[GgufEdit]) {
    for edit in edits {
        if metadata.is_empty() {
            return;
        }
        match edit {
            GgufEdit::Drop(i) => {
                metadata.remove(i.index(metadata.len()));
            }
            GgufEdit::Value(i, h) => {
                let k = i.index(metadata.len());
                let value = match h {
                    GgufHostile::U32(n) => GgufValue::U32(*n as u32),
                    GgufHostile::U64(n) => GgufValue::U64(*n),
                    GgufHostile::I32(n) => GgufValue::I32(*n),
                    GgufHostile::F32(x) => GgufValue::F32(*x),
                    GgufHostile::Bool(b) => GgufValue::Bool(*b),
                    GgufHostile::Text(n) => GgufValue::String("x".repeat(*n)),
                    GgufHostile::Zeros(n) => GgufValue::Array(vec![GgufValue::U32(0); *n]),
                    GgufHostile::Nested(depth) => {
                        let mut v = GgufValue::Array(vec![GgufValue::U32(7)]);
                        for _ in 0..*depth {
                            v = GgufValue::Array(vec![v]);
                        }
                        v
                    }
                    GgufHostile::Grown(n) => match &metadata[k].1 {
                        GgufValue::Array(items) => {
                            GgufValue::Array((0..*n).flat_map(|_| items.iter().cloned()).collect())
                        }
                        other => other.clone(),
                    },
                };
                metadata[k].1 = value;
            }
        }
    }
}
