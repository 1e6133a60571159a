//! Property-based tests (proptest) of vidflow's input boundaries, each against a reference written
//! here independently of the code it checks:
//!
//! 1. pathway configs (YAML): parsing, the error for each kind of mistake, `resolve` (every
//!    layer's mask edge for edge against the rules), `scaled_to`, random YAML text mutations, and
//!    the `--mode`/`--config` argument (`Pathways::parse`);
//! 2. prompt segmentation on the shipped test package: the token groups of `PromptBuilder::layout`
//!    against groups computed from each token's bytes by the documented boundary rule;
//! 3. the data loaders (JSON sample lists, TVBench and TOMATO folders): every record is one
//!    sample or one bad record, classified as a reference classifier predicts;
//! 4. shape-only layout specs (`SequenceGroups::from_shape_spec`): against a reference parser,
//!    with the allocations of each call measured.
//!
//! Cases per property: `VIDFLOW_PROPTEST_CASES` (default: each property's own, about 64). The
//! seed: `VIDFLOW_PROPTEST_SEED` (or `PROPTEST_RNG_SEED`); without one the default run uses a
//! fixed seed (reproducible), and a run with `VIDFLOW_PROPTEST_CASES` set a fresh random one,
//! printed with the result of each property. See docs/testing.md, "Property tests and the long
//! run".

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Debug;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, subsequence, Index};
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};

use vidflow::data::{load, DataSpec, Dataset};
use vidflow::package::manifest::PromptSpec;
use vidflow::package::Manifest;
use vidflow::pathway::{
    is_group_name, MaskSchedule, PathwayConfig, Pathways, SequenceGroups, MAX_LAYOUT_POSITIONS,
    MAX_NUM_LAYERS,
};
use vidflow::prompt::{PromptBuilder, PromptLayout};

// ---------------------------------------------------------------------------------------------
// Allocation guard: no single allocation of this test binary may exceed ALLOC_CAP, so a property
// that finds an absurd allocation aborts with "memory allocation of N bytes failed" instead of
// exhausting the machine's memory; and per thread, the largest and the total bytes requested are
// counted, for the "never allocates absurdly" properties.

const ALLOC_CAP: usize = 4 << 30;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    static TOTAL: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|c| c.set(c.get().max(size)));
    let _ = TOTAL.try_with(|c| c.set(c.get().saturating_add(size)));
}

struct CappedAlloc;

unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        if layout.size() > ALLOC_CAP {
            return std::ptr::null_mut();
        }
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        if layout.size() > ALLOC_CAP {
            return std::ptr::null_mut();
        }
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        if new_size > ALLOC_CAP {
            return std::ptr::null_mut();
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: CappedAlloc = CappedAlloc;

/// `f`'s result, with the largest single allocation and the total bytes it requested.
fn measured<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    LARGEST.with(|c| c.set(0));
    TOTAL.with(|c| c.set(0));
    let out = f();
    (out, LARGEST.with(Cell::get), TOTAL.with(Cell::get))
}

// ---------------------------------------------------------------------------------------------
// Runner: cases and seed from the environment, a tally of outcomes for the report line.

struct Mode {
    long: Option<u32>,
    seed: u64,
}

const DEFAULT_SEED: u64 = 0x5eed_0ff1_0e00;

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")),
    )
}

fn mode() -> &'static Mode {
    static MODE: OnceLock<Mode> = OnceLock::new();
    MODE.get_or_init(|| {
        let long = env_u64("VIDFLOW_PROPTEST_CASES").map(|n| n.clamp(1, u32::MAX as u64) as u32);
        let given = env_u64("VIDFLOW_PROPTEST_SEED").or_else(|| env_u64("PROPTEST_RNG_SEED"));
        let seed = match (given, long) {
            (Some(s), _) => s,
            (None, None) => DEFAULT_SEED,
            (None, Some(_)) => {
                use std::hash::{BuildHasher, Hasher};
                let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                h.write_u128(now);
                h.write_u32(std::process::id());
                h.finish()
            }
        };
        Mode { long, seed }
    })
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Outcome counts of one property, printed with its result (which paths the cases took).
#[derive(Default)]
struct Tally(RefCell<BTreeMap<String, usize>>);

impl Tally {
    fn add(&self, what: &str) {
        *self.0.borrow_mut().entry(what.to_string()).or_default() += 1;
    }
    fn line(&self) -> String {
        self.0
            .borrow()
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Runs one property for its cases; a failure panics with the minimal input and how to replay it.
fn check<S>(
    name: &str,
    default_cases: u32,
    strategy: S,
    test: impl Fn(S::Value, &Tally) -> Result<(), TestCaseError>,
) where
    S: Strategy,
    S::Value: Debug,
{
    let m = mode();
    let cases = m.long.unwrap_or(default_cases);
    let config = Config {
        cases,
        rng_seed: RngSeed::Fixed(m.seed ^ fnv1a(name)),
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..Config::default()
    };
    let tally = Tally::default();
    let start = Instant::now();
    let mut runner = TestRunner::new(config);
    let result = runner.run(&strategy, |v| test(v, &tally));
    let replay = format!(
        "replay: VIDFLOW_PROPTEST_CASES={cases} VIDFLOW_PROPTEST_SEED={} cargo test --release \
         --test properties {name}",
        m.seed
    );
    match result {
        Ok(()) => eprintln!(
            "property {name}: {cases} cases passed in {:.2} s (seed {}; {})",
            start.elapsed().as_secs_f64(),
            m.seed,
            tally.line()
        ),
        Err(TestError::Fail(reason, input)) => {
            panic!("property {name} failed: {reason}\nminimal failing input: {input:#?}\n{replay}")
        }
        Err(TestError::Abort(reason)) => panic!("property {name} aborted: {reason}\n{replay}"),
    }
}

fn json(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn contains_all(msg: &str, needles: &[String]) -> bool {
    needles.iter().all(|n| msg.contains(n.as_str()))
}

// =============================================================================================
// 1. Pathway configs
// =============================================================================================

/// A shape-only layout with small numbers, and the reference position sets of its groups.
#[derive(Debug, Clone)]
struct Shape {
    system: usize,
    frames: usize,
    grid_h: usize,
    grid_w: usize,
    /// The whole question block, options included.
    question: usize,
    options: usize,
    option_len: usize,
    answer: Option<usize>,
    template: usize,
}

fn shape() -> impl Strategy<Value = Shape> {
    (
        0..5usize,
        1..5usize,
        1..3usize,
        1..4usize,
        1..8usize,
        0..4usize,
        1..3usize,
        proptest::option::of(0..4usize),
        1..4usize,
    )
        .prop_map(
            |(system, frames, grid_h, grid_w, q, options, option_len, answer, template)| Shape {
                system,
                frames,
                grid_h,
                grid_w,
                question: q + options * option_len,
                options,
                option_len,
                answer: if options > 0 {
                    answer.map(|a| a % options)
                } else {
                    None
                },
                template,
            },
        )
}

impl Shape {
    fn spec(&self) -> String {
        let mut s = format!(
            "system={},frames={}x{}x{},question={},template={}",
            self.system, self.frames, self.grid_h, self.grid_w, self.question, self.template
        );
        if self.options > 0 {
            s += &format!(",options={}x{}", self.options, self.option_len);
        }
        if let Some(a) = self.answer {
            s += &format!(",answer={a}");
        }
        s
    }

    /// The groups as docs/pathways.md and the groups module describe them: system, video
    /// (frames of h·w), question (its text, then the options), template, and the final position
    /// as `last`, laid out one after the other.
    fn reference(&self) -> RefLayout {
        let mut next = 0;
        let mut take = |n: usize| {
            let r: Vec<usize> = (next..next + n).collect();
            next += n;
            r
        };
        let system = take(self.system);
        let frames: Vec<Vec<usize>> = (0..self.frames)
            .map(|_| take(self.grid_h * self.grid_w))
            .collect();
        let question_text = take(self.question - self.options * self.option_len);
        let options: Vec<Vec<usize>> = (0..self.options).map(|_| take(self.option_len)).collect();
        let template = take(self.template - 1);
        let last = take(1);
        let mut named = BTreeMap::new();
        named.insert("system".to_string(), system);
        named.insert("video".into(), frames.concat());
        let mut question = question_text.clone();
        question.extend(options.concat());
        named.insert("question".into(), question);
        named.insert("question.text".into(), question_text);
        named.insert("template".into(), template);
        named.insert("last".into(), last);
        if let Some(a) = self.answer {
            named.insert("option.true".into(), options[a].clone());
            let rest: Vec<usize> = (0..self.options)
                .filter(|&j| j != a)
                .flat_map(|j| options[j].clone())
                .collect();
            named.insert("option.false".into(), rest);
        }
        RefLayout {
            seq_len: next,
            frames,
            options,
            named,
        }
    }
}

struct RefLayout {
    seq_len: usize,
    frames: Vec<Vec<usize>>,
    options: Vec<Vec<usize>>,
    named: BTreeMap<String, Vec<usize>>,
}

/// `frame[7]` -> Some(7) for `prefix` "frame[": digits only, as docs/pathways.md writes them.
fn index_in(name: &str, prefix: &str) -> Option<usize> {
    let inner = name.strip_prefix(prefix)?.strip_suffix(']')?;
    if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    inner.parse().ok()
}

impl RefLayout {
    /// The positions of a group, or None when this layout has no such group.
    fn group(&self, name: &str) -> Option<Vec<usize>> {
        if let Some(i) = index_in(name, "frame[") {
            return self.frames.get(i).cloned();
        }
        if let Some(j) = index_in(name, "option[") {
            return self.options.get(j).cloned();
        }
        self.named.get(name).cloned()
    }

    fn frame_of(&self, pos: usize) -> Option<usize> {
        self.frames.iter().position(|f| f.contains(&pos))
    }
}

const NAMED_GROUPS: [&str; 8] = [
    "system",
    "video",
    "question",
    "question.text",
    "option.true",
    "option.false",
    "template",
    "last",
];
const BAD_GROUPS: [&str; 11] = [
    "Video",
    "frames",
    "frame[x]",
    "option",
    "",
    "frame[-1]",
    "questoin",
    "frame[1",
    "option[]",
    " video",
    "frame[ 1]",
];

/// Group names a rule may use (docs/pathways.md), written independently of `is_group_name`.
fn valid_group_name(name: &str) -> bool {
    NAMED_GROUPS.contains(&name)
        || name == "cross-frame"
        || index_in(name, "frame[").is_some()
        || index_in(name, "option[").is_some()
}

fn group_name() -> BoxedStrategy<String> {
    prop_oneof![
        18 => select(NAMED_GROUPS.to_vec()).prop_map(String::from),
        6 => (0..5usize).prop_map(|i| format!("frame[{i}]")),
        6 => (0..4usize).prop_map(|j| format!("option[{j}]")),
        1 => select(BAD_GROUPS.to_vec()).prop_map(String::from),
    ]
    .boxed()
}

/// Items that are never a layer set, whatever the layer count.
const LAYER_JUNK: [&str; 12] = [
    "", "x", "6..15", "1-", "-3", "1-2-3", "ALL", "３", "1.5", "one", "1 2", "all-3",
];

#[derive(Debug, Clone)]
enum Item {
    All,
    One(u64),
    /// first, last, written with spaces around the dash
    Range(u64, u64, bool),
    Junk(&'static str),
}

#[derive(Debug, Clone)]
enum Scalar {
    Int(i64),
    /// Items joined by the separator, as one YAML string.
    Str(Vec<Item>, &'static str),
    PlainAll,
    Float,
    Bool,
    Null,
    Big,
}

#[derive(Debug, Clone)]
enum LayerVal {
    Scalar(Scalar),
    List(Vec<Scalar>),
    Nested,
    Map,
}

fn layer_number() -> BoxedStrategy<u64> {
    // Mostly layers of every generated model (4 to 8 layers), sometimes beyond or 0.
    prop_oneof![60 => 1u64..=4, 4 => 5u64..=8, 1 => Just(0u64), 1 => 9u64..=12].boxed()
}

fn item() -> BoxedStrategy<Item> {
    prop_oneof![
        2 => Just(Item::All),
        12 => layer_number().prop_map(Item::One),
        12 => (layer_number(), layer_number(), any::<bool>())
            .prop_map(|(a, b, s)| Item::Range(a.min(b), a.max(b), s)),
        1 => (1u64..=8, 1u64..4, any::<bool>()).prop_map(|(a, d, s)| Item::Range(a + d, a, s)),
        1 => select(LAYER_JUNK.to_vec()).prop_map(Item::Junk),
    ]
    .boxed()
}

fn scalar() -> BoxedStrategy<Scalar> {
    prop_oneof![
        12 => prop_oneof![40 => 1i64..=4, 8 => 5i64..=8, 1 => Just(0i64), 1 => -3i64..0, 1 => 9i64..=12]
            .prop_map(Scalar::Int),
        12 => (vec(item(), 1..4), select(vec![",", ", ", " , "]))
            .prop_map(|(i, s)| Scalar::Str(i, s)),
        4 => Just(Scalar::PlainAll),
        1 => prop_oneof![
            Just(Scalar::Float),
            Just(Scalar::Bool),
            Just(Scalar::Null),
            Just(Scalar::Big)
        ],
    ]
    .boxed()
}

fn layer_val() -> BoxedStrategy<LayerVal> {
    prop_oneof![
        20 => scalar().prop_map(LayerVal::Scalar),
        8 => vec(scalar(), 1..4).prop_map(LayerVal::List),
        1 => Just(LayerVal::List(vec![])),
        1 => Just(LayerVal::Nested),
        1 => Just(LayerVal::Map),
    ]
    .boxed()
}

impl Item {
    fn render(&self) -> String {
        match self {
            Item::All => "all".into(),
            Item::One(n) => n.to_string(),
            Item::Range(a, b, true) => format!("{a} - {b}"),
            Item::Range(a, b, false) => format!("{a}-{b}"),
            Item::Junk(s) => s.to_string(),
        }
    }
}

impl Scalar {
    fn render(&self) -> String {
        match self {
            Scalar::Int(n) => n.to_string(),
            Scalar::Str(items, sep) => {
                json(&items.iter().map(Item::render).collect::<Vec<_>>().join(sep))
            }
            Scalar::PlainAll => "all".into(),
            Scalar::Float => "2.5".into(),
            Scalar::Bool => "true".into(),
            Scalar::Null => "null".into(),
            Scalar::Big => "99999999999999999999".into(),
        }
    }
}

impl LayerVal {
    fn render(&self) -> String {
        match self {
            LayerVal::Scalar(s) => s.render(),
            LayerVal::List(items) => format!(
                "[{}]",
                items
                    .iter()
                    .map(Scalar::render)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            LayerVal::Nested => "[1, [2]]".into(),
            LayerVal::Map => "{a: 1}".into(),
        }
    }
}

/// Marks layers first..=last (1-based) of `set`; false when that is not a range of this model.
fn mark(first: u64, last: u64, set: &mut [bool]) -> bool {
    if first < 1 || first > last || last > set.len() as u64 {
        return false;
    }
    for l in first..=last {
        set[l as usize - 1] = true;
    }
    true
}

fn eval_item(it: &Item, set: &mut [bool]) -> bool {
    match it {
        Item::All => mark(1, set.len() as u64, set),
        Item::One(n) => mark(*n, *n, set),
        Item::Range(a, b, _) => mark(*a, *b, set),
        Item::Junk(_) => false,
    }
}

fn eval_scalar(s: &Scalar, set: &mut [bool]) -> bool {
    match s {
        Scalar::Int(n) => *n >= 1 && mark(*n as u64, *n as u64, set),
        Scalar::Str(items, _) => items.iter().all(|i| eval_item(i, set)),
        Scalar::PlainAll => mark(1, set.len() as u64, set),
        Scalar::Float | Scalar::Bool | Scalar::Null | Scalar::Big => false,
    }
}

/// The layer set a value names on a model of `num_layers` layers (docs/pathways.md), or None.
fn eval_layers(v: &LayerVal, num_layers: usize) -> Option<Vec<bool>> {
    let mut set = vec![false; num_layers];
    let ok = match v {
        LayerVal::Scalar(s) => eval_scalar(s, &mut set),
        LayerVal::List(items) => {
            !items.is_empty() && items.iter().all(|s| eval_scalar(s, &mut set))
        }
        LayerVal::Nested | LayerVal::Map => false,
    };
    ok.then_some(set)
}

/// `blocked: null` is the same as no `blocked:`.
fn present(v: &Option<LayerVal>) -> Option<&LayerVal> {
    v.as_ref()
        .filter(|v| !matches!(v, LayerVal::Scalar(Scalar::Null)))
}

#[derive(Debug, Clone)]
struct GenRule {
    source: String,
    target: String,
    blocked: Option<LayerVal>,
    except: Option<LayerVal>,
}

#[derive(Debug, Clone)]
enum Extra {
    Nothing,
    UnknownRuleField,
    UnknownTopField,
    MissingNumLayers,
}

#[derive(Debug, Clone)]
struct GenConfig {
    num_layers: u64,
    name: Option<String>,
    rules: Vec<GenRule>,
    block_style: bool,
    extra: Extra,
}

/// (source, target, blocked per layer) as the reference reads a rule.
type RefRule = (String, String, Vec<bool>);

fn gen_rule() -> BoxedStrategy<GenRule> {
    let ends = prop_oneof![
        24 => (group_name(), group_name()),
        6 => Just(("cross-frame".to_string(), "cross-frame".to_string())),
        1 => (group_name(), any::<bool>()).prop_map(|(g, first)| if first {
            ("cross-frame".to_string(), g)
        } else {
            (g, "cross-frame".to_string())
        }),
    ];
    let layers = prop_oneof![
        20 => layer_val().prop_map(|v| (Some(v), None)),
        10 => layer_val().prop_map(|v| (None, Some(v))),
        1 => Just((None, None)),
        1 => (layer_val(), layer_val()).prop_map(|(a, b)| (Some(a), Some(b))),
    ];
    (ends, layers)
        .prop_map(|((source, target), (blocked, except))| GenRule {
            source,
            target,
            blocked,
            except,
        })
        .boxed()
}

fn gen_config() -> BoxedStrategy<GenConfig> {
    (
        prop_oneof![
            6 => 1u64..=3,
            30 => 4u64..=8,
            1 => Just(0u64),
            1 => Just(1_000_000_000_000u64),
            1 => Just(MAX_NUM_LAYERS as u64 + 1),
        ],
        proptest::option::of(
            select(vec!["tiny", "a: b", "名前", "x\"y", ""]).prop_map(String::from),
        ),
        vec(gen_rule(), 0..4),
        any::<bool>(),
        prop_oneof![
            40 => Just(Extra::Nothing),
            1 => Just(Extra::UnknownRuleField),
            1 => Just(Extra::UnknownTopField),
            1 => Just(Extra::MissingNumLayers),
        ],
    )
        .prop_map(|(num_layers, name, rules, block_style, extra)| GenConfig {
            num_layers,
            name,
            rules,
            block_style,
            extra,
        })
        .boxed()
}

impl GenConfig {
    fn render(&self) -> String {
        let mut s = String::new();
        if let Some(n) = &self.name {
            s += &format!("name: {}\n", json(n));
        }
        if !matches!(self.extra, Extra::MissingNumLayers) {
            s += &format!("num_layers: {}\n", self.num_layers);
        }
        if matches!(self.extra, Extra::UnknownTopField) {
            s += "rulez: []\n";
        }
        if self.rules.is_empty() {
            s += "rules: []\n";
            return s;
        }
        s += "rules:\n";
        for (i, r) in self.rules.iter().enumerate() {
            let mut fields = vec![("source", json(&r.source)), ("target", json(&r.target))];
            if let Some(b) = &r.blocked {
                fields.push(("blocked", b.render()));
            }
            if let Some(e) = &r.except {
                fields.push(("except", e.render()));
            }
            if i == 0 && matches!(self.extra, Extra::UnknownRuleField) {
                fields.push(("blockd", "all".into()));
            }
            let kv: Vec<String> = fields.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            if self.block_style {
                s += &format!("  - {}\n", kv.join("\n    "));
            } else {
                s += &format!("  - {{{}}}\n", kv.join(", "));
            }
        }
        s
    }

    /// The rules as the config means them, or the texts the error must contain.
    fn expected(&self) -> Result<Vec<RefRule>, Vec<String>> {
        // Errors of the YAML reading itself, which name the field path or the value.
        let mut doc: Vec<&str> = match self.extra {
            Extra::MissingNumLayers => vec!["num_layers"],
            Extra::UnknownTopField => vec!["rulez"],
            Extra::UnknownRuleField if !self.rules.is_empty() => vec!["blockd"],
            _ => vec![],
        };
        // An integer beyond u64 cannot be read as a YAML value at all.
        let big = |v: &Option<LayerVal>| match v {
            Some(LayerVal::Scalar(Scalar::Big)) => true,
            Some(LayerVal::List(items)) => items.iter().any(|s| matches!(s, Scalar::Big)),
            _ => false,
        };
        for r in &self.rules {
            for v in [&r.blocked, &r.except] {
                if big(v) {
                    doc.push("99999999999999999999");
                }
            }
        }
        match doc.as_slice() {
            [] => {}
            [one] => return Err(vec!["not a pathway config".into(), one.to_string()]),
            _ => return Err(vec!["not a pathway config".into()]),
        }
        let n = self.num_layers;
        if n == 0 {
            return Err(vec!["num_layers must be positive".into()]);
        }
        if n > MAX_NUM_LAYERS as u64 {
            return Err(vec!["num_layers".into(), n.to_string()]);
        }
        let n = n as usize;
        let mut out = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            let at = format!("rule {} (", i + 1);
            for name in [&r.source, &r.target] {
                if !valid_group_name(name) {
                    return Err(vec![at, format!("{name:?}"), "unknown group".into()]);
                }
            }
            if (r.source == "cross-frame") != (r.target == "cross-frame") {
                return Err(vec![at, "cross-frame".into()]);
            }
            let blocked = match (present(&r.blocked), present(&r.except)) {
                (Some(b), None) => match eval_layers(b, n) {
                    Some(set) => set,
                    None => return Err(vec![at, "blocked:".into()]),
                },
                (None, Some(e)) => match eval_layers(e, n) {
                    Some(set) => set.into_iter().map(|open| !open).collect(),
                    None => return Err(vec![at, "except:".into()]),
                },
                _ => return Err(vec![at, "exactly one of".into()]),
            };
            out.push((r.source.clone(), r.target.clone(), blocked));
        }
        Ok(out)
    }
}

/// The first rule (1-based) with a group this layout lacks, and that group's name.
fn expected_resolve_error(rules: &[RefRule], layout: &RefLayout) -> Option<(usize, String)> {
    for (i, (source, target, _)) in rules.iter().enumerate() {
        if source == "cross-frame" {
            continue;
        }
        for name in [source, target] {
            if layout.group(name).is_none() {
                return Some((i + 1, name.clone()));
            }
        }
    }
    None
}

/// Blocked[q][k] in one layer: k > q (causal), or some rule active in this layer has k in its
/// source group and q in its target group (for cross-frame: k in an earlier frame than q).
fn reference_mask(rules: &[RefRule], layout: &RefLayout, layer: usize) -> Vec<Vec<bool>> {
    let s = layout.seq_len;
    let sets: Vec<Option<(HashSet<usize>, HashSet<usize>)>> = rules
        .iter()
        .map(|(src, tgt, _)| {
            if src == "cross-frame" {
                None
            } else {
                let g = |n: &str| layout.group(n).unwrap().into_iter().collect();
                Some((g(src), g(tgt)))
            }
        })
        .collect();
    (0..s)
        .map(|q| {
            (0..s)
                .map(|k| {
                    k > q
                        || rules.iter().zip(&sets).any(|((_, _, blocked), set)| {
                            blocked[layer]
                                && match set {
                                    None => matches!(
                                        (layout.frame_of(k), layout.frame_of(q)),
                                        (Some(fk), Some(fq)) if fk < fq
                                    ),
                                    Some((src, tgt)) => src.contains(&k) && tgt.contains(&q),
                                }
                        })
                })
                .collect()
        })
        .collect()
}

fn check_schedule(
    sched: &MaskSchedule,
    rules: &[RefRule],
    layout: &RefLayout,
    num_layers: usize,
    context: &str,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(sched.num_layers(), num_layers);
    prop_assert_eq!(sched.seq_len(), layout.seq_len);
    for l in 0..num_layers {
        let want = reference_mask(rules, layout, l);
        let mut open = 0;
        for (q, row) in want.iter().enumerate() {
            for (k, &blocked) in row.iter().enumerate() {
                let got_open = sched.is_open(l, q, k);
                prop_assert!(
                    !(k > q && got_open),
                    "layer {} opens the future edge q={} k={}\n{}",
                    l + 1,
                    q,
                    k,
                    context
                );
                prop_assert_eq!(
                    got_open,
                    !blocked,
                    "layer {} edge q={} k={} (last row is {})\n{}",
                    l + 1,
                    q,
                    k,
                    layout.seq_len - 1,
                    context
                );
                open += usize::from(!blocked);
            }
        }
        prop_assert_eq!(sched.open_edges()[l], open, "layer {} open edges", l + 1);
    }
    Ok(())
}

/// 0-based source layer for target layer t when mapping `from` layers onto `to`: the one whose
/// span [s/from, (s+1)/from) holds t's centre (t + 1/2)/to (docs/pathways.md, Scaling).
fn source_layer(t: usize, from: usize, to: usize) -> usize {
    (0..from)
        .find(|&s| 2 * s * to <= (2 * t + 1) * from && (2 * t + 1) * from < 2 * (s + 1) * to)
        .expect("every centre lies in one source layer")
}

fn parsed_rules(c: &PathwayConfig) -> Vec<RefRule> {
    c.rules
        .iter()
        .map(|r| (r.source.clone(), r.target.clone(), r.blocked.clone()))
        .collect()
}

/// Resolves `c` against `shape`, checking the result against the reference built from `rules`.
fn check_resolve(
    c: &PathwayConfig,
    rules: &[RefRule],
    shape: &Shape,
    text: &str,
    tally: &Tally,
) -> Result<Option<MaskSchedule>, TestCaseError> {
    let layout = shape.reference();
    let groups = SequenceGroups::from_shape_spec(&shape.spec(), None)
        .map_err(|e| TestCaseError::fail(format!("layout {}: {e}", shape.spec())))?;
    let context = format!("layout {}\nconfig:\n{text}", shape.spec());
    let got = c.resolve(&groups, c.num_layers);
    match (expected_resolve_error(rules, &layout), got) {
        (Some((i, name)), Err(e)) => {
            let msg = e.to_string();
            let needles = [format!("rule {i} ("), format!("{name:?}")];
            prop_assert!(
                msg.starts_with("cfg.yaml: ") && contains_all(&msg, &needles),
                "resolve error {:?} should name {:?}\n{}",
                msg,
                needles,
                context
            );
            tally.add("resolve-error");
            Ok(None)
        }
        (Some((i, name)), Ok(_)) => Err(TestCaseError::fail(format!(
            "rule {i} names {name:?}, which this layout lacks, yet resolve succeeded\n{context}"
        ))),
        (None, Err(e)) => Err(TestCaseError::fail(format!(
            "resolve refused a config whose groups all exist: {e}\n{context}"
        ))),
        (None, Ok(sched)) => {
            check_schedule(&sched, rules, &layout, c.num_layers, &context)?;
            tally.add("resolved");
            Ok(Some(sched))
        }
    }
}

#[test]
fn prop_pathway_configs_match_the_reference() {
    check(
        "prop_pathway_configs_match_the_reference",
        256,
        (gen_config(), shape(), 1..12usize),
        |(cfg, shape, scale_to), tally| {
            let text = cfg.render();
            let got = PathwayConfig::from_yaml(&text, Path::new("cfg.yaml"));
            let c = match (cfg.expected(), got) {
                (Err(needles), Err(e)) => {
                    let msg = e.to_string();
                    prop_assert!(
                        msg.starts_with("cfg.yaml: ") && contains_all(&msg, &needles),
                        "error {:?} should name the file and {:?}\nconfig:\n{}",
                        msg,
                        needles,
                        text
                    );
                    tally.add(&format!(
                        "parse-error {}",
                        needles[needles.len().min(2) - 1]
                    ));
                    return Ok(());
                }
                (Err(needles), Ok(c)) => {
                    return Err(TestCaseError::fail(format!(
                        "accepted a wrong config (expected an error naming {needles:?}): \
                         {c:?}\nconfig:\n{text}"
                    )))
                }
                (Ok(_), Err(e)) => {
                    return Err(TestCaseError::fail(format!(
                        "refused a valid config: {e}\nconfig:\n{text}"
                    )))
                }
                (Ok(rules), Ok(c)) => {
                    prop_assert_eq!(parsed_rules(&c), rules.clone(), "config:\n{}", text);
                    prop_assert_eq!(c.num_layers as u64, cfg.num_layers);
                    let want_name = cfg.name.clone().unwrap_or_else(|| "cfg".into());
                    prop_assert_eq!(&c.name, &want_name);
                    c
                }
            };
            let rules = parsed_rules(&c);
            let sched = check_resolve(&c, &rules, &shape, &text, tally)?;
            // A model with another layer count is refused, naming num_layers.
            let groups = SequenceGroups::from_shape_spec(&shape.spec(), None).unwrap();
            let e = c
                .resolve(&groups, c.num_layers + 1)
                .unwrap_err()
                .to_string();
            prop_assert!(e.contains("num_layers"), "{}", e);

            // Scaling: target layer t takes the state of the source layer holding its centre.
            let (from, to) = (c.num_layers, scale_to);
            let scaled = c.scaled_to(to);
            prop_assert_eq!(scaled.num_layers, to);
            if to == from {
                prop_assert_eq!(&scaled, &c);
            }
            for (r, sr) in c.rules.iter().zip(&scaled.rules) {
                prop_assert_eq!((&r.source, &r.target), (&sr.source, &sr.target));
                prop_assert_eq!(sr.blocked.len(), to);
                for t in 0..to {
                    prop_assert_eq!(sr.blocked[t], r.blocked[source_layer(t, from, to)]);
                }
            }
            if let Some(sched) = sched {
                let ss = scaled.resolve(&groups, to).unwrap();
                for t in 0..to {
                    prop_assert!(
                        ss.layer(t) == sched.layer(source_layer(t, from, to)),
                        "scaled layer {} differs from source layer {}",
                        t + 1,
                        source_layer(t, from, to) + 1
                    );
                }
            }
            Ok(())
        },
    );
}

const YAML_SNIPPETS: [&str; 36] = [
    ":",
    "- ",
    "[",
    "]",
    "{",
    "}",
    "\"",
    "'",
    "\n",
    "  ",
    "\t",
    "#",
    "&a ",
    "*a",
    "!!str ",
    "!!binary ",
    "~",
    "null",
    "blockd",
    "9",
    "99999999999",
    "-",
    ",",
    "all",
    "frame[",
    "cross-frame",
    "\u{feff}",
    "é",
    "%YAML 1.2\n",
    "---\n",
    "...\n",
    "<<: *a\n",
    "? ",
    "0",
    "num_layers: 3\n",
    "\\",
];

#[derive(Debug, Clone)]
enum Mutation {
    Insert(Index, &'static str),
    Delete(Index, usize),
    DupLine(Index),
    Truncate(Index),
    Swap(Index, Index),
    /// A comment line or a blank line before a line: the same config.
    LineBefore(Index, &'static str),
}

fn mutation() -> BoxedStrategy<Mutation> {
    prop_oneof![
        4 => (any::<Index>(), select(YAML_SNIPPETS.to_vec())).prop_map(|(i, s)| Mutation::Insert(i, s)),
        3 => (any::<Index>(), 1..12usize).prop_map(|(i, n)| Mutation::Delete(i, n)),
        1 => any::<Index>().prop_map(Mutation::DupLine),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Swap(a, b)),
        4 => (any::<Index>(), select(vec!["# note\n", "\n", "# é: [\n", "   \n"]))
            .prop_map(|(i, s)| Mutation::LineBefore(i, s)),
    ]
    .boxed()
}

/// Applies mutations to text, char by char (the result stays valid UTF-8).
fn mutate_text(text: &str, muts: &[Mutation]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for m in muts {
        let n = chars.len();
        match m {
            Mutation::Insert(i, s) => {
                let at = i.index(n + 1);
                chars.splice(at..at, s.chars());
            }
            Mutation::Delete(i, len) if n > 0 => {
                let at = i.index(n);
                chars.drain(at..(at + len).min(n));
            }
            Mutation::DupLine(i) if n > 0 => {
                let s: String = chars.iter().collect();
                let lines: Vec<&str> = s.split_inclusive('\n').collect();
                let k = i.index(lines.len());
                let mut out = String::new();
                for (j, l) in lines.iter().enumerate() {
                    out.push_str(l);
                    if j == k {
                        out.push_str(l);
                    }
                }
                chars = out.chars().collect();
            }
            Mutation::Truncate(i) => chars.truncate(i.index(n + 1)),
            Mutation::Swap(a, b) if n > 0 => chars.swap(a.index(n), b.index(n)),
            Mutation::LineBefore(i, s) => {
                let starts: Vec<usize> = std::iter::once(0)
                    .chain((0..n).filter(|&k| chars[k] == '\n').map(|k| k + 1))
                    .filter(|&k| k < n)
                    .collect();
                if !starts.is_empty() {
                    let at = starts[i.index(starts.len())];
                    chars.splice(at..at, s.chars());
                }
            }
            _ => {}
        }
    }
    chars.into_iter().collect()
}

#[test]
fn prop_pathway_yaml_mutations_parse_or_fail_cleanly() {
    // Valid bases: a generated config when it is valid, else one of the shipped configs.
    let mut shipped: Vec<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/pathways"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
    shipped.sort();
    assert!(!shipped.is_empty());
    check(
        "prop_pathway_yaml_mutations_parse_or_fail_cleanly",
        256,
        (gen_config(), any::<Index>(), vec(mutation(), 1..4), shape()),
        |(cfg, pick, muts, shape), tally| {
            let base = match cfg.expected() {
                Ok(_) => cfg.render(),
                Err(_) => shipped[pick.index(shipped.len())].clone(),
            };
            let text = mutate_text(&base, &muts);
            match PathwayConfig::from_yaml(&text, Path::new("cfg.yaml")) {
                Err(e) => {
                    let msg = e.to_string();
                    prop_assert!(msg.starts_with("cfg.yaml: "), "{:?}", msg);
                    tally.add("error");
                }
                Ok(c) => {
                    prop_assert!(c.num_layers >= 1 && c.num_layers <= MAX_NUM_LAYERS);
                    for r in &c.rules {
                        prop_assert_eq!(r.blocked.len(), c.num_layers);
                        prop_assert!(
                            is_group_name(&r.source) && valid_group_name(&r.source),
                            "{:?}",
                            r.source
                        );
                        prop_assert!(
                            is_group_name(&r.target) && valid_group_name(&r.target),
                            "{:?}",
                            r.target
                        );
                        prop_assert_eq!(r.source == "cross-frame", r.target == "cross-frame");
                    }
                    if c.num_layers <= 64 {
                        // The parsed rules are the reference for the masks.
                        check_resolve(&c, &parsed_rules(&c), &shape, &text, tally)?;
                    } else {
                        let groups = SequenceGroups::from_shape_spec(&shape.spec(), None).unwrap();
                        let _ = c.resolve(&groups, c.num_layers);
                    }
                    tally.add("parsed");
                }
            }
            Ok(())
        },
    );
}

/// `random:RATIO` texts and the ratio they mean (None: not a ratio in [0, 1]).
const RATIOS: [(&str, Option<f64>); 12] = [
    ("0", Some(0.0)),
    ("1", Some(1.0)),
    ("0.5", Some(0.5)),
    ("0.593", Some(0.593)),
    ("1e-3", Some(0.001)),
    ("1.0000001", None),
    ("-0.1", None),
    ("nan", None),
    ("inf", None),
    ("", None),
    ("0.5.5", None),
    (" 0.5", None),
];
const SEEDS: [(&str, Option<u64>); 10] = [
    ("", Some(0)),
    (":7", Some(7)),
    (":0", Some(0)),
    (":18446744073709551615", Some(u64::MAX)),
    (":18446744073709551616", None),
    (":-1", None),
    (":", None),
    (":x", None),
    (":1:2", None),
    (": 7", None),
];

#[derive(Debug, Clone)]
enum PathArg {
    Random(usize, usize),
    File(GenConfig),
    Missing(String),
    Blank(&'static str),
}

#[test]
fn prop_pathways_argument() {
    let tmp = tempfile::tempdir().unwrap();
    let arg = prop_oneof![
        4 => (0..RATIOS.len(), 0..SEEDS.len()).prop_map(|(r, s)| PathArg::Random(r, s)),
        2 => gen_config().prop_map(PathArg::File),
        1 => "[a-z0-9.]{1,12}".prop_map(PathArg::Missing),
        1 => select(vec!["", " ", "\t\n"]).prop_map(PathArg::Blank),
    ];
    check("prop_pathways_argument", 64, arg, |arg, tally| {
        match arg {
            PathArg::Random(r, s) => {
                let (rt, rv) = RATIOS[r];
                let (st, sv) = SEEDS[s];
                let text = format!("random:{rt}{st}");
                match (rv, sv, Pathways::parse(&text)) {
                    (Some(ratio), Some(seed), Ok(Pathways::Random(b))) => {
                        prop_assert_eq!((b.ratio, b.seed), (ratio, seed));
                        tally.add("random");
                    }
                    (Some(_), Some(_), got) => {
                        return Err(TestCaseError::fail(format!("{text:?} gave {got:?}")))
                    }
                    (_, _, Ok(p)) => {
                        return Err(TestCaseError::fail(format!("{text:?} accepted as {p:?}")))
                    }
                    (_, _, Err(e)) => {
                        let msg = e.to_string();
                        prop_assert!(msg.starts_with("invalid input: "), "{}", msg);
                        prop_assert!(
                            msg.contains(&format!("{text:?}")) || msg.contains("outside [0, 1]"),
                            "{}",
                            msg
                        );
                        tally.add("random-error");
                    }
                }
            }
            PathArg::File(cfg) => {
                let text = cfg.render();
                let path = tmp.path().join("cfg.yaml");
                std::fs::write(&path, &text).unwrap();
                let direct = PathwayConfig::from_yaml(&text, &path);
                match (direct, Pathways::parse(path.to_str().unwrap())) {
                    (Ok(a), Ok(Pathways::Config(b))) => {
                        prop_assert_eq!(a, b);
                        tally.add("file");
                    }
                    (Err(a), Err(b)) => {
                        prop_assert_eq!(a.to_string(), b.to_string());
                        tally.add("file-error");
                    }
                    (a, b) => {
                        return Err(TestCaseError::fail(format!("from_yaml {a:?}, parse {b:?}")))
                    }
                }
            }
            PathArg::Missing(name) => {
                let path = tmp.path().join("absent").join(&name);
                let e = Pathways::parse(path.to_str().unwrap())
                    .unwrap_err()
                    .to_string();
                prop_assert!(e.contains(&name), "{}", e);
                tally.add("missing");
            }
            PathArg::Blank(s) => {
                let e = Pathways::parse(s).unwrap_err().to_string();
                prop_assert!(e.contains("random:RATIO"), "{}", e);
                tally.add("blank");
            }
        }
        Ok(())
    });
}

// =============================================================================================
// 4. Shape-only layout specs
// =============================================================================================

const SPEC_KNOWN: [&str; 6] = [
    "system", "frames", "question", "template", "options", "answer",
];
const SPEC_JUNK_KEYS: [&str; 5] = ["video", "Frames", "opts", "", "system x"];
const HUGE_NUMBERS: [&str; 8] = [
    "1048576",
    "1048577",
    "4294967296",
    "4294967297",
    "18446744073709551615",
    "9223372036854775808",
    "18446744073709551616",
    "99999999999999999999999",
];
const NUMBER_JUNK: [&str; 10] = ["", "x", "-1", "1.5", " ", "1_000", "0x10", "١", "1e3", "+"];

fn number_text(small: Range<u64>) -> BoxedStrategy<String> {
    prop_oneof![
        60 => small.prop_map(|n| n.to_string()),
        1 => (40u64..5000).prop_map(|n| n.to_string()),
        1 => select(HUGE_NUMBERS.to_vec()).prop_map(String::from),
        1 => select(NUMBER_JUNK.to_vec()).prop_map(String::from),
    ]
    .boxed()
}

fn dims_text(n: usize, small: Range<u64>) -> BoxedStrategy<String> {
    let part = prop_oneof![
        60 => small.prop_map(|n| n.to_string()),
        1 => Just("0".to_string()),
        1 => select(HUGE_NUMBERS.to_vec()).prop_map(String::from),
        1 => select(NUMBER_JUNK.to_vec()).prop_map(String::from),
    ];
    prop_oneof![
        40 => vec(part.clone(), n..=n).prop_map(|p| p.join("x")),
        1 => vec(part, 1..5).prop_map(|p| p.join("x")),
        1 => number_text(1..5),
    ]
    .boxed()
}

#[derive(Debug, Clone)]
struct GenSpec {
    spec: String,
    default_frames: Option<(usize, usize, usize)>,
}

fn gen_spec() -> BoxedStrategy<GenSpec> {
    (
        (
            proptest::option::weighted(0.97, number_text(0..40)),
            proptest::option::weighted(0.95, dims_text(3, 1..5)),
            proptest::option::weighted(0.97, number_text(10..60)),
            proptest::option::weighted(
                0.97,
                prop_oneof![30 => number_text(1..6), 1 => Just("0".to_string())].boxed(),
            ),
            proptest::option::weighted(0.4, dims_text(2, 1..4)),
            proptest::option::weighted(0.3, number_text(0..3)),
        ),
        proptest::option::weighted(0.08, (select(SPEC_JUNK_KEYS.to_vec()), number_text(0..9))),
        proptest::option::weighted(0.05, any::<Index>()),
        proptest::option::weighted(0.05, select(vec!["system", "x", "=", "=3", "frames:2x2x2"])),
        vec(any::<Index>(), 12),
        vec(select(vec![",", ",", ",", ", ", " , ", ",,"]), 12),
        vec((any::<bool>(), any::<bool>()), 12),
        proptest::option::weighted(0.3, (1..4usize, 1..3usize, 1..3usize)),
    )
        .prop_map(
            |(known, junk, dup, bare, perm, seps, pads, default_frames)| {
                let (system, frames, question, template, options, answer) = known;
                let mut parts: Vec<String> = Vec::new();
                for (k, v) in [
                    ("system", system),
                    ("frames", frames),
                    ("question", question),
                    ("template", template),
                    ("options", options),
                    ("answer", answer),
                ] {
                    if let Some(v) = v {
                        parts.push(format!("{k}={v}"));
                    }
                }
                if let Some((k, v)) = junk {
                    parts.push(format!("{k}={v}"));
                }
                if let (Some(i), false) = (dup, parts.is_empty()) {
                    let p = parts[i.index(parts.len())].clone();
                    parts.push(p);
                }
                if let Some(b) = bare {
                    parts.push(b.to_string());
                }
                // Fisher-Yates with the drawn indices, then spaces around keys and values.
                for i in (1..parts.len()).rev() {
                    let j = perm[i % perm.len()].index(i + 1);
                    parts.swap(i, j);
                }
                let mut spec = String::new();
                for (i, p) in parts.iter().enumerate() {
                    if i > 0 {
                        spec.push_str(seps[i % seps.len()]);
                    }
                    let (a, b) = pads[i % pads.len()];
                    let p = match p.split_once('=') {
                        Some((k, v)) if a || b => {
                            format!(
                                "{}{k}{}={}{v}",
                                if a { " " } else { "" },
                                if b { " " } else { "" },
                                if b { " " } else { "" }
                            )
                        }
                        _ => p.clone(),
                    };
                    spec.push_str(&p);
                }
                GenSpec {
                    spec,
                    default_frames,
                }
            },
        )
        .boxed()
}

/// A whole number as the spec grammar reads one: ASCII digits, at most usize::MAX.
fn spec_number(v: &str) -> Option<u128> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) || v.len() > 30 {
        return None;
    }
    let n: u128 = v.parse().ok()?;
    (n <= usize::MAX as u128).then_some(n)
}

/// The reference reading of a layout spec: the layout, or the texts its error must contain.
/// Written from the documentation of `from_shape_spec`, in the order it lists the checks.
fn reference_spec(
    spec: &str,
    default_frames: Option<(usize, usize, usize)>,
) -> Result<Shape, Vec<String>> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for raw in spec.split(',') {
        let part = raw.trim();
        if part.is_empty() {
            continue;
        }
        let Some(eq) = part.find('=') else {
            return Err(vec![format!("{part:?}"), "not key=value".into()]);
        };
        let (k, v) = (part[..eq].trim(), part[eq + 1..].trim());
        if fields.iter().any(|(kk, _)| kk == k) {
            return Err(vec![k.to_string(), "given twice".into()]);
        }
        fields.push((k.to_string(), v.to_string()));
    }
    let mut sorted: Vec<&String> = fields.iter().map(|(k, _)| k).collect();
    sorted.sort();
    if let Some(k) = sorted.iter().find(|k| !SPEC_KNOWN.contains(&k.as_str())) {
        return Err(vec![format!("unknown field {k:?}")]);
    }
    let get = |k: &str| {
        fields
            .iter()
            .find(|(kk, _)| kk == k)
            .map(|(_, v)| v.clone())
    };
    let dims = |k: &str, v: &str, n: usize| -> Result<Vec<u128>, Vec<String>> {
        let parts: Option<Vec<u128>> = v.split('x').map(spec_number).collect();
        match parts {
            Some(p) if p.len() == n && !p.contains(&0) => Ok(p),
            _ => Err(vec![format!("{k}={v}")]),
        }
    };
    let frames = match get("frames") {
        Some(v) => {
            let d = dims("frames", &v, 3)?;
            (d[0], d[1], d[2])
        }
        None => match default_frames {
            Some((f, h, w)) => (f as u128, h as u128, w as u128),
            None => return Err(vec!["frames=FxHxW is missing".into()]),
        },
    };
    let count = |k: &str| -> Result<u128, Vec<String>> {
        let v = get(k).ok_or_else(|| vec![format!("field {k}=N is missing")])?;
        spec_number(&v).ok_or_else(|| vec![format!("{k}={v}"), "not a whole number".into()])
    };
    let system = count("system")?;
    let question = count("question")?;
    let template = count("template")?;
    if template == 0 {
        return Err(vec!["template must be at least 1".into()]);
    }
    let options = match get("options") {
        Some(v) => {
            let d = dims("options", &v, 2)?;
            (d[0], d[1])
        }
        None => (0, 0),
    };
    if options.0 * options.1 >= question {
        return Err(vec![format!("question={question} must be longer")]);
    }
    let answer = match get("answer") {
        None => None,
        Some(v) => match spec_number(&v) {
            Some(j) if j < options.0 => Some(j as usize),
            _ => return Err(vec![format!("answer={v}")]),
        },
    };
    let fits = |n: u128| (n <= usize::MAX as u128).then_some(n);
    let seq_len = fits(frames.1 * frames.2)
        .and_then(|per| fits(frames.0.checked_mul(per)?))
        .and_then(|v| fits(v + system))
        .and_then(|v| fits(v + question))
        .and_then(|v| fits(v + template));
    match seq_len {
        None => return Err(vec!["overflows".into()]),
        Some(s) if s > MAX_LAYOUT_POSITIONS as u128 => return Err(vec!["at most".into()]),
        _ => {}
    }
    Ok(Shape {
        system: system as usize,
        frames: frames.0 as usize,
        grid_h: frames.1 as usize,
        grid_w: frames.2 as usize,
        question: question as usize,
        options: options.0 as usize,
        option_len: options.1 as usize,
        answer,
        template: template as usize,
    })
}

fn check_layout_spec(
    spec: &str,
    default_frames: Option<(usize, usize, usize)>,
    tally: &Tally,
) -> Result<(), TestCaseError> {
    let (got, largest, total) = measured(|| SequenceGroups::from_shape_spec(spec, default_frames));
    match (reference_spec(spec, default_frames), got) {
        (Err(needles), Err(e)) => {
            let msg = e.to_string();
            prop_assert!(
                msg.starts_with("invalid input: layout ") && contains_all(&msg, &needles),
                "error {:?} should name {:?}",
                msg,
                needles
            );
            prop_assert!(
                total <= (1 << 16) + 64 * spec.len(),
                "a refused layout requested {} bytes",
                total
            );
            tally.add("error");
        }
        (Err(needles), Ok(g)) => {
            return Err(TestCaseError::fail(format!(
                "accepted (seq_len {}), expected an error naming {needles:?}",
                g.seq_len()
            )))
        }
        (Ok(shape), Err(e)) => return Err(TestCaseError::fail(format!("refused {shape:?}: {e}"))),
        (Ok(shape), Ok(g)) => {
            let r = shape.reference();
            let parts = shape.system
                + shape.frames * shape.grid_h * shape.grid_w
                + shape.question
                + shape.template;
            prop_assert_eq!(g.seq_len(), parts);
            prop_assert_eq!(g.seq_len(), r.seq_len);
            prop_assert_eq!(g.first_video(), shape.system);
            prop_assert_eq!(g.frames(), &r.frames[..]);
            let mut names: Vec<String> = r.named.keys().cloned().collect();
            names.extend((0..=shape.frames).map(|i| format!("frame[{i}]")));
            names.extend((0..=shape.options).map(|j| format!("option[{j}]")));
            names.extend(["option.true".to_string(), "option.false".to_string()]);
            for n in &names {
                match (r.group(n), g.group(n)) {
                    (Some(want), Ok(got)) => prop_assert_eq!(got, &want[..], "group {}", n),
                    (None, Err(_)) => {}
                    (want, got) => {
                        return Err(TestCaseError::fail(format!(
                            "group {n}: expected {want:?}, got {got:?}"
                        )))
                    }
                }
            }
            // The spans are lists of positions: a handful of them, each at most seq_len long.
            let bound = 64 * g.seq_len() + (1 << 16) + 64 * spec.len();
            prop_assert!(
                largest <= 8 * g.seq_len() + 4096 && total <= bound,
                "seq_len {} allocated {} bytes at once, {} in all",
                g.seq_len(),
                largest,
                total
            );
            tally.add("ok");
        }
    }
    Ok(())
}

#[test]
fn prop_layout_specs_match_the_reference() {
    check(
        "prop_layout_specs_match_the_reference",
        256,
        gen_spec(),
        |s, tally| check_layout_spec(&s.spec, s.default_frames, tally),
    );
}

#[test]
fn prop_layout_specs_arbitrary_text() {
    let fields = vec(
        (
            "(system|frames|question|template|options|answer|video)",
            "[0-9]{1,3}(x[0-9]{1,3}){0,3}",
        ),
        0..7,
    )
    .prop_map(|f| {
        f.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    });
    let text = prop_oneof![
        3 => "[a-z=,x0-9 ]{0,60}".boxed(),
        3 => fields.boxed(),
        1 => any::<String>().boxed(),
    ];
    check(
        "prop_layout_specs_arbitrary_text",
        128,
        (
            text,
            proptest::option::of((1..4usize, 1..3usize, 1..3usize)),
        ),
        |(spec, default_frames), tally| check_layout_spec(&spec, default_frames, tally),
    );
}

// =============================================================================================
// 2. Prompt segmentation (the shipped test package: byte-level BPE, 4 frames of 4x4 tokens,
//    512 positions)
// =============================================================================================

fn tiny_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny")
}

fn tiny_builder() -> (Manifest, PromptBuilder) {
    let dir = tiny_dir();
    let m = Manifest::from_file(&dir.join("model.yaml")).unwrap();
    let b = PromptBuilder::new(&m, &dir).unwrap();
    (m, b)
}

const PROMPT_PIECES: [&str; 40] = [
    "视频中发生了什么",
    "猫",
    "👍🏽",
    "👨‍👩‍👧",
    "e\u{301}",
    "a\u{308}\u{301}",
    "مرحبا",
    "שלום",
    "\u{200f}",
    "\u{202e}",
    "Options:",
    "ASSISTANT:",
    "USER:",
    "<video>",
    "(A)",
    "\n(B) ",
    "Best option:(",
    "<s>",
    "</s>",
    "<image>",
    "<pad>",
    "\t",
    "\n",
    "  ",
    " ",
    "\u{3000}",
    "\u{a0}",
    "\u{200b}",
    "\u{feff}",
    "\0",
    "\u{7f}",
    "{text}",
    "{label}",
    "Question: ",
    "\r\n",
    "'s",
    "Ġ",
    "Ċ",
    "?!",
    "...",
];

fn piece() -> BoxedStrategy<String> {
    prop_oneof![
        6 => "[a-zA-Z]{1,8}",
        1 => "[0-9]{1,4}",
        4 => select(PROMPT_PIECES.to_vec()).prop_map(String::from),
        1 => any::<char>().prop_map(String::from),
    ]
    .boxed()
}

fn words(max: usize) -> BoxedStrategy<String> {
    (vec(piece(), 1..max), select(vec![" ", " ", "", "\n"]))
        .prop_map(|(p, sep)| p.join(sep))
        .boxed()
}

fn blank_text() -> BoxedStrategy<String> {
    select(vec!["", " ", "\t", "\n", "\u{3000}", "\u{a0}", "  \n "])
        .prop_map(String::from)
        .boxed()
}

/// A piece repeated to about `len` bytes (up to ~20 KB).
fn long_text() -> BoxedStrategy<String> {
    (piece(), 200..20_000usize)
        .prop_map(|(p, len)| {
            let mut s = String::new();
            while s.len() < len {
                s.push_str(&p);
                s.push(' ');
            }
            s
        })
        .boxed()
}

#[derive(Debug, Clone)]
struct PromptCase {
    question: String,
    options: Vec<String>,
    answer: Option<usize>,
}

fn prompt_case() -> BoxedStrategy<PromptCase> {
    let question = prop_oneof![24 => words(10), 1 => blank_text(), 1 => long_text()];
    let option = prop_oneof![40 => words(4), 1 => blank_text(), 1 => long_text()];
    let options = prop_oneof![
        12 => vec(option.clone(), 2..=8),
        1 => vec(option.clone(), 0..2),
        1 => vec(option, 9..=10),
    ];
    // The answer: mostly one of the options, sometimes none or an index past them.
    let answer = prop_oneof![
        6 => any::<Index>().prop_map(Ok),
        2 => Just(Err(None)),
        1 => (0..9usize).prop_map(|a| Err(Some(a))),
    ];
    (question, options, answer)
        .prop_map(|(question, options, answer)| PromptCase {
            answer: match answer {
                Ok(i) => Some(i.index(options.len().max(1))),
                Err(a) => a,
            },
            question,
            options,
        })
        .boxed()
}

/// The prompt rendered from the manifest's parts as docs/video-and-prompts.md describes, with
/// the byte ranges of the placeholder, the question block, the question and each option line.
struct MyRender {
    text: String,
    placeholder: Range<usize>,
    block: Range<usize>,
    question: Range<usize>,
    options: Vec<(String, Range<usize>)>,
}

fn my_render(spec: &PromptSpec, question: &str, options: &[String]) -> MyRender {
    let mut t = String::new();
    let push = |t: &mut String, s: &str| {
        let a = t.len();
        t.push_str(s);
        a..t.len()
    };
    push(&mut t, &spec.system);
    push(&mut t, &spec.user_prefix);
    let placeholder = push(&mut t, &spec.video_placeholder);
    push(&mut t, &spec.after_video);
    let block_start = t.len();
    push(&mut t, &spec.question_prefix);
    let q = push(&mut t, question);
    push(&mut t, &spec.options_header);
    let (before, after) = spec.option_format.split_once("{text}").unwrap();
    let mut opts = Vec::new();
    for (j, o) in options.iter().enumerate() {
        if j > 0 {
            push(&mut t, &spec.option_separator);
        }
        let label = &spec.option_labels[j];
        let line = format!(
            "{}{o}{}",
            before.replace("{label}", label),
            after.replace("{label}", label)
        );
        opts.push((label.clone(), push(&mut t, &line)));
    }
    let block = block_start..t.len();
    push(&mut t, &spec.instruction);
    push(&mut t, &spec.assistant_prefix);
    push(&mut t, &spec.answer_prefix);
    MyRender {
        text: t,
        placeholder,
        block,
        question: q,
        options: opts,
    }
}

/// GPT-2's byte-level alphabet, inverted: the byte each vocabulary character stands for.
fn byte_level_alphabet() -> BTreeMap<char, u8> {
    let mut bytes: Vec<u32> = (0x21..=0x7e)
        .chain(0xa1..=0xac)
        .chain(0xae..=0xff)
        .collect();
    let mut chars = bytes.clone();
    let mut extra = 0;
    for b in 0..256u32 {
        if !bytes.contains(&b) {
            bytes.push(b);
            chars.push(256 + extra);
            extra += 1;
        }
    }
    bytes
        .iter()
        .zip(chars)
        .map(|(&b, c)| (char::from_u32(c).unwrap(), b as u8))
        .collect()
}

fn overlap(a: &Range<usize>, b: &Range<usize>) -> usize {
    a.end.min(b.end).saturating_sub(a.start.max(b.start))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum RefSlot {
    QuestionText,
    Option(usize),
    QuestionOther,
    Template,
}

/// The documented boundary rule (src/prompt/mod.rs): a token belongs to a span when its
/// characters overlap it; content (question text, option lines) wins over prompt text; between
/// two content spans, the one sharing more bytes, the earlier on a tie.
fn classify_ref(r: &MyRender, extent: &Range<usize>) -> RefSlot {
    let mut best: Option<(usize, RefSlot)> = None;
    let content = std::iter::once((r.question.clone(), RefSlot::QuestionText)).chain(
        r.options
            .iter()
            .enumerate()
            .map(|(j, (_, full))| (full.clone(), RefSlot::Option(j))),
    );
    for (span, slot) in content {
        let ov = overlap(extent, &span);
        if ov > 0 && best.is_none_or(|(b, _)| ov > b) {
            best = Some((ov, slot));
        }
    }
    match best {
        Some((_, s)) => s,
        None if overlap(extent, &r.block) > 0 => RefSlot::QuestionOther,
        None => RefSlot::Template,
    }
}

struct RefGroups {
    seq_len: usize,
    placeholder_index: usize,
    system: Vec<usize>,
    video: Vec<usize>,
    frames: Vec<Vec<usize>>,
    question: Vec<usize>,
    question_text: Vec<usize>,
    options: Vec<Vec<usize>>,
    template: Vec<usize>,
    last: Vec<usize>,
}

/// Groups from each token's own bytes (vocabulary entry through the byte-level alphabet), never
/// from the tokenizer's offsets: bos, tokens before the placeholder = system; 64 video positions;
/// then each token by the boundary rule, the final one as `last`.
fn reference_groups(
    b: &PromptBuilder,
    m: &Manifest,
    r: &MyRender,
) -> Result<RefGroups, TestCaseError> {
    let (frames, per_frame) = (m.video.num_frames, m.video.tokens_per_frame());
    let video_id = m.special_tokens.video_token_id as u32;
    let bos = usize::from(m.special_tokens.bos_token_id.is_some());
    let alphabet = byte_level_alphabet();
    let tok = b.tokenizer();
    let enc = tok
        .encode(r.text.as_str(), false)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let ids = enc.get_ids();
    let mut extents = Vec::with_capacity(ids.len());
    let mut bytes: Vec<u8> = Vec::new();
    for &id in ids {
        let piece = tok.id_to_token(id).unwrap();
        let start = bytes.len();
        for c in piece.chars() {
            bytes.push(*alphabet.get(&c).ok_or_else(|| {
                TestCaseError::fail(format!("token {piece:?} has a char outside the alphabet"))
            })?);
        }
        extents.push(start..bytes.len());
    }
    prop_assert!(
        bytes == r.text.as_bytes(),
        "the tokens' bytes do not spell the prompt"
    );
    let ph: Vec<usize> = (0..ids.len()).filter(|&k| ids[k] == video_id).collect();
    prop_assert_eq!(ph.len(), 1);
    prop_assert_eq!(&extents[ph[0]], &r.placeholder);
    let ph = ph[0];
    let n_video = frames * per_frame;
    let seq_len = bos + ids.len() - 1 + n_video;
    let first_video = ph + bos;
    let mut g = RefGroups {
        seq_len,
        placeholder_index: first_video,
        system: (0..first_video).collect(),
        video: (first_video..first_video + n_video).collect(),
        frames: (0..frames)
            .map(|i| (first_video + i * per_frame..first_video + (i + 1) * per_frame).collect())
            .collect(),
        question: vec![],
        question_text: vec![],
        options: vec![vec![]; r.options.len()],
        template: vec![],
        last: vec![seq_len - 1],
    };
    for (k, e) in extents.iter().enumerate().skip(ph + 1) {
        let pos = k + bos + n_video - 1;
        if pos == seq_len - 1 {
            continue;
        }
        match classify_ref(r, e) {
            RefSlot::QuestionText => {
                g.question.push(pos);
                g.question_text.push(pos);
            }
            RefSlot::Option(j) => {
                g.question.push(pos);
                g.options[j].push(pos);
            }
            RefSlot::QuestionOther => g.question.push(pos),
            RefSlot::Template => g.template.push(pos),
        }
    }
    Ok(g)
}

fn decode_positions(b: &PromptBuilder, l: &PromptLayout, positions: &[usize]) -> String {
    let ids: Vec<u32> = positions
        .iter()
        .map(|&p| l.token_id_at(p).unwrap() as u32)
        .collect();
    b.tokenizer().decode(&ids, false).unwrap()
}

/// Which tokenizer a prompt property runs: the test package's, or one of the two fixtures of
/// tests/prompt_groups.rs (`tests/fixtures/tokenizers/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokKind {
    Tiny,
    ByteLevelFixture,
    SentencePieceFixture,
}

fn check_layout_groups(
    b: &PromptBuilder,
    m: &Manifest,
    kind: TokKind,
    case: &PromptCase,
    r: &MyRender,
    l: &PromptLayout,
) -> Result<(), TestCaseError> {
    let g = &l.groups;
    let (frames, per) = (m.video.num_frames, m.video.tokens_per_frame());
    let s = l.seq_len;
    prop_assert_eq!(&l.rendered.text, &r.text);
    prop_assert_eq!(&l.rendered.question_text, &r.question);
    for (o, (label, full)) in l.rendered.options.iter().zip(&r.options) {
        prop_assert_eq!((&o.label, &o.full), (label, full));
    }
    prop_assert!(s <= m.max_positions, "seq_len {} > {}", s, m.max_positions);
    prop_assert_eq!(s, l.input_ids.len() - 1 + frames * per);

    // system ∪ video ∪ question ∪ template ∪ last is exactly 0..S, without overlaps.
    let mut all: Vec<usize> = [&g.system, &g.video, &g.question, &g.template, &g.last]
        .iter()
        .flat_map(|v| v.iter().copied())
        .collect();
    all.sort_unstable();
    prop_assert!(
        all == (0..s).collect::<Vec<_>>(),
        "the groups do not partition 0..{}",
        s
    );
    // frames partition video in order, each of tokens_per_frame positions.
    prop_assert_eq!(g.frames.len(), frames);
    prop_assert!(g.frames.iter().all(|f| f.len() == per));
    prop_assert_eq!(g.frames.concat(), g.video.clone());
    prop_assert!(g.video.windows(2).all(|w| w[1] == w[0] + 1));
    prop_assert_eq!(g.video.first().copied(), Some(l.placeholder_index));
    prop_assert_eq!(
        l.input_ids[l.placeholder_index],
        m.special_tokens.video_token_id
    );
    // options ⊂ question, pairwise disjoint, in order after the question text; last = [S-1].
    let question: BTreeSet<usize> = g.question.iter().copied().collect();
    let mut seen = BTreeSet::new();
    let mut prev_end = g.question_text.last().copied();
    for o in &g.options {
        prop_assert!(!o.is_empty());
        prop_assert!(o.iter().all(|p| question.contains(p) && seen.insert(*p)));
        prop_assert!(
            o.windows(2).all(|w| w[1] == w[0] + 1),
            "option not contiguous: {:?}",
            o
        );
        prop_assert!(prev_end.is_none_or(|e| o[0] > e));
        prev_end = o.last().copied();
    }
    prop_assert!(g
        .question_text
        .iter()
        .all(|p| question.contains(p) && !seen.contains(p)));
    prop_assert_eq!(&g.last, &vec![s - 1]);
    // option.true / option.false follow the answer.
    match case.answer {
        Some(a) => {
            prop_assert_eq!(&g.option_true, &g.options[a]);
            let mut f: Vec<usize> = (0..g.options.len())
                .filter(|&j| j != a)
                .flat_map(|j| g.options[j].clone())
                .collect();
            f.sort_unstable();
            prop_assert_eq!(&g.option_false, &f);
        }
        None => prop_assert!(g.option_true.is_empty() && g.option_false.is_empty()),
    }
    // Answer tokens: distinct, one per option, the label's own token after "Best option:(".
    prop_assert_eq!(l.option_token_ids.len(), case.options.len());
    let distinct: BTreeSet<i64> = l.option_token_ids.iter().copied().collect();
    prop_assert_eq!(distinct.len(), case.options.len());
    if kind == TokKind::Tiny {
        for (j, &id) in l.option_token_ids.iter().enumerate() {
            let label = &m.prompt.option_labels[j];
            prop_assert_eq!(Some(id as u32), b.tokenizer().token_to_id(label));
        }
    }
    // SentencePiece: a token may straddle the separator and the option (content wins), and the
    // decoder strips a leading space, so compare without the spaces around.
    let sp = kind == TokKind::SentencePieceFixture;
    let fit = |got: &str| {
        if sp {
            got.trim().to_string()
        } else {
            got.to_string()
        }
    };
    // Decoding: each option's tokens spell part of its rendered line; the question text's tokens
    // part of the question (with the space before it).
    for (j, o) in g.options.iter().enumerate() {
        let line = &r.text[r.options[j].1.clone()];
        let got = fit(&decode_positions(b, l, o));
        prop_assert!(
            line.contains(&got),
            "option {} decodes to {:?}, line {:?}",
            j,
            got,
            line
        );
    }
    let got = fit(&decode_positions(b, l, &g.question_text));
    let q = format!(" {}", case.question);
    prop_assert!(q.contains(&got), "question text decodes to {:?}", got);
    if sp {
        return Ok(());
    }

    // And the exact groups of the boundary rule, from the tokens' own bytes.
    let want = reference_groups(b, m, r)?;
    prop_assert_eq!(s, want.seq_len);
    prop_assert_eq!(l.placeholder_index, want.placeholder_index);
    prop_assert_eq!(&g.system, &want.system);
    prop_assert_eq!(&g.video, &want.video);
    prop_assert_eq!(&g.frames, &want.frames);
    prop_assert_eq!(&g.question, &want.question, "question");
    prop_assert_eq!(&g.question_text, &want.question_text, "question.text");
    prop_assert_eq!(&g.options, &want.options, "options");
    prop_assert_eq!(&g.template, &want.template, "template");
    prop_assert_eq!(&g.last, &want.last);
    Ok(())
}

/// What the layout of `case` must give: Ok, or an error containing these texts.
fn expected_prompt(
    b: &PromptBuilder,
    m: &Manifest,
    case: &PromptCase,
) -> Result<MyRender, Vec<String>> {
    let n = case.options.len();
    if let Some(a) = case.answer {
        if a >= n {
            return Err(vec!["answer index".into()]);
        }
    }
    if !(2..=8).contains(&n) {
        return Err(vec!["answer options".into()]);
    }
    if case.question.trim().is_empty() {
        return Err(vec!["the question text".into()]);
    }
    if let Some(j) = case.options.iter().position(|o| o.trim().is_empty()) {
        return Err(vec![format!("option {} text", m.prompt.option_labels[j])]);
    }
    let r = my_render(&m.prompt, &case.question, &case.options);
    let max = m.max_positions;
    if r.text.len() > max * 32 {
        return Err(vec!["bytes".into(), format!("{max} positions")]);
    }
    if r.text.matches(m.prompt.video_placeholder.as_str()).count() != 1 {
        return Err(vec!["appears".into(), "times".into()]);
    }
    let tokens = b.tokenizer().encode(r.text.as_str(), false).unwrap().len();
    let bos = usize::from(m.special_tokens.bos_token_id.is_some());
    if bos + tokens - 1 + m.video.num_video_tokens() > max {
        return Err(vec!["positions".into(), format!("at most {max}")]);
    }
    Ok(r)
}

#[test]
fn prop_prompt_segmentation() {
    let (m, b) = tiny_builder();
    check(
        "prop_prompt_segmentation",
        128,
        prompt_case(),
        |case, tally| {
            let opts: Vec<&str> = case.options.iter().map(String::as_str).collect();
            let got = b.layout(&case.question, &opts, case.answer);
            match (expected_prompt(&b, &m, &case), got) {
                (Err(needles), Err(e)) => {
                    let msg = e.to_string();
                    prop_assert!(
                        msg.starts_with("prompt: ") && contains_all(&msg, &needles),
                        "error {:?} should say {:?}",
                        msg,
                        needles
                    );
                    tally.add(&format!("error {}", needles[0]));
                }
                (Err(needles), Ok(l)) => {
                    return Err(TestCaseError::fail(format!(
                        "laid out (seq_len {}), expected an error saying {needles:?}",
                        l.seq_len
                    )))
                }
                (Ok(_), Err(e)) => return Err(TestCaseError::fail(format!("refused: {e}"))),
                (Ok(r), Ok(l)) => {
                    check_layout_groups(&b, &m, TokKind::Tiny, &case, &r, &l)?;
                    tally.add("ok");
                }
            }
            Ok(())
        },
    );
}

/// The test package's manifest with one of the tokenizer fixtures of tests/prompt_groups.rs in
/// place of its own (same prompt, video grid and 512 positions).
fn fixture_builder(kind: TokKind) -> (Manifest, PromptBuilder) {
    let (mut m, _) = tiny_builder();
    let (file, placeholder, bos) = match kind {
        TokKind::Tiny => return tiny_builder(),
        TokKind::ByteLevelFixture => ("byte_level_bpe.json", "<|video_pad|>", None),
        TokKind::SentencePieceFixture => ("sentencepiece_bpe.json", "<video>", Some(1)),
    };
    m.tokenizer = format!("../tokenizers/{file}");
    m.prompt.video_placeholder = placeholder.into();
    let tok = tokenizers::Tokenizer::from_file(tiny_dir().join(&m.tokenizer)).unwrap();
    m.special_tokens.video_token_id = tok.token_to_id(placeholder).unwrap() as i64;
    m.special_tokens.bos_token_id = bos;
    let b = PromptBuilder::new(&m, &tiny_dir()).unwrap();
    (m, b)
}

#[test]
fn prop_prompt_segmentation_fixture_tokenizers() {
    let builders = [
        fixture_builder(TokKind::ByteLevelFixture),
        fixture_builder(TokKind::SentencePieceFixture),
    ];
    let kinds = [TokKind::ByteLevelFixture, TokKind::SentencePieceFixture];
    check(
        "prop_prompt_segmentation_fixture_tokenizers",
        96,
        (prompt_case(), 0..2usize),
        |(case, which), tally| {
            let (m, b) = &builders[which];
            let kind = kinds[which];
            let opts: Vec<&str> = case.options.iter().map(String::as_str).collect();
            let got = b.layout(&case.question, &opts, case.answer);
            match (expected_prompt(b, m, &case), got) {
                (Err(needles), Err(e)) => {
                    let msg = e.to_string();
                    prop_assert!(
                        msg.starts_with("prompt: ") && contains_all(&msg, &needles),
                        "error {:?} should say {:?}",
                        msg,
                        needles
                    );
                    tally.add(&format!("{kind:?} error"));
                }
                (Err(needles), Ok(l)) => {
                    return Err(TestCaseError::fail(format!(
                        "laid out (seq_len {}), expected an error saying {needles:?}",
                        l.seq_len
                    )))
                }
                (Ok(_), Err(e)) => return Err(TestCaseError::fail(format!("refused: {e}"))),
                (Ok(r), Ok(l)) => {
                    check_layout_groups(b, m, kind, &case, &r, &l)?;
                    tally.add(&format!("{kind:?} ok"));
                }
            }
            Ok(())
        },
    );
}

// =============================================================================================
// 3. Data loaders
// =============================================================================================

/// A JSON value as generated, rendered by hand (so that keys can repeat).
#[derive(Debug, Clone)]
enum J {
    Absent,
    Null,
    Str(String),
    UInt(u64),
    Neg(i64),
    /// A number literal with a fraction or exponent, e.g. `2.5`, `1e3`.
    Float(&'static str),
    Bool,
    List(Vec<J>),
    Obj,
}

impl J {
    fn s(v: &str) -> J {
        J::Str(v.to_string())
    }
    fn render(&self) -> Option<String> {
        Some(match self {
            J::Absent => return None,
            J::Null => "null".into(),
            J::Str(s) => json(s),
            J::UInt(n) => n.to_string(),
            J::Neg(n) => n.to_string(),
            J::Float(f) => f.to_string(),
            J::Bool => "true".into(),
            J::List(items) => format!(
                "[{}]",
                items
                    .iter()
                    .map(|i| i.render().unwrap_or_else(|| "null".into()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            J::Obj => "{\"x\": 1}".into(),
        })
    }
    fn str(&self) -> Option<&str> {
        match self {
            J::Str(s) => Some(s),
            _ => None,
        }
    }
    fn is_unset(&self) -> bool {
        matches!(self, J::Absent | J::Null)
    }
    fn number(&self) -> Option<f64> {
        match self {
            J::UInt(n) => Some(*n as f64),
            J::Neg(n) => Some(*n as f64),
            J::Float(f) => Some(f.parse().unwrap()),
            _ => None,
        }
    }
    fn strings(&self) -> Option<Vec<String>> {
        match self {
            J::List(items) => items.iter().map(|i| i.str().map(String::from)).collect(),
            _ => None,
        }
    }
}

/// An object: fields in order (absent ones left out), then an optional repeated key (the first
/// occurrence is the value that counts) and extra fields.
fn render_object(fields: &[(&str, &J)], dup: Option<Index>, extra: &[(&str, &str)]) -> String {
    let mut parts: Vec<String> = fields
        .iter()
        .filter_map(|(k, v)| Some(format!("{}: {}", json(k), v.render()?)))
        .collect();
    let present: Vec<&str> = fields
        .iter()
        .filter(|(_, v)| !matches!(v, J::Absent))
        .map(|(k, _)| *k)
        .collect();
    for (k, v) in extra {
        parts.push(format!("{}: {v}", json(k)));
    }
    if let (Some(i), false) = (dup, present.is_empty()) {
        parts.push(format!(
            "{}: \"dup\"",
            json(present[i.index(present.len())])
        ));
    }
    format!("{{{}}}", parts.join(", "))
}

fn has_dup(fields: &[(&str, &J)], dup: &Option<Index>) -> bool {
    dup.is_some() && fields.iter().any(|(_, v)| !matches!(v, J::Absent))
}

const OPTION_POOL: [&str; 14] = [
    "red", "blue", "green", " red", "red ", "", "  ", "Green", "猫", "👍🏽", "e\u{301}", "é", "\t",
    "x",
];
const DISTINCT_OPTIONS: [&str; 13] = [
    "red",
    "blue",
    "green",
    "yellow",
    "猫",
    "👍🏽",
    "e\u{301}",
    "é",
    "The ball falls.",
    "(B) car",
    "Options:",
    "<video>",
    " padded ",
];

fn options_j() -> BoxedStrategy<J> {
    prop_oneof![
        16 => subsequence(DISTINCT_OPTIONS.to_vec(), 2..=8)
            .prop_shuffle()
            .prop_map(|v| J::List(v.into_iter().map(J::s).collect())),
        3 => vec(
            prop_oneof![
                10 => select(OPTION_POOL.to_vec()).prop_map(J::s),
                1 => Just(J::UInt(3)),
                1 => Just(J::Null),
            ],
            0..10
        )
        .prop_map(J::List),
        1 => prop_oneof![Just(J::Absent), Just(J::Null), Just(J::s("a, b")), Just(J::Obj)],
    ]
    .boxed()
}

fn string_j(pool: Vec<&'static str>) -> BoxedStrategy<J> {
    prop_oneof![
        50 => select(pool).prop_map(J::s),
        1 => Just(J::Absent),
        1 => Just(J::Null),
        1 => Just(J::UInt(5)),
        1 => Just(J::Bool),
        1 => Just(J::List(vec![J::s("a")])),
    ]
    .boxed()
}

fn seconds_j() -> BoxedStrategy<J> {
    prop_oneof![
        30 => Just(J::Absent),
        2 => Just(J::Null),
        6 => select(vec!["0.5", "2.5", "1e3"]).prop_map(J::Float),
        3 => (0u64..30).prop_map(J::UInt),
        1 => Just(J::Neg(-3)),
        1 => Just(J::s("1s")),
        1 => Just(J::Bool),
    ]
    .boxed()
}

/// An answer: a value, or the text of the option at an index (when there is one).
#[derive(Debug, Clone)]
enum Ans {
    Val(J),
    TextOf(Index),
    /// An index among the options (0 when there are none).
    IndexOf(Index),
}

impl Ans {
    fn value(&self, options: &J) -> J {
        match self {
            Ans::Val(v) => v.clone(),
            Ans::IndexOf(i) => match options {
                J::List(items) => J::UInt(i.index(items.len().max(1)) as u64),
                _ => J::UInt(0),
            },
            Ans::TextOf(i) => match options {
                J::List(items) if !items.is_empty() => match &items[i.index(items.len())] {
                    J::Str(s) => J::Str(s.clone()),
                    _ => J::s("not an option"),
                },
                _ => J::s("not an option"),
            },
        }
    }
}

fn index_answer() -> BoxedStrategy<Ans> {
    prop_oneof![
        24 => any::<Index>().prop_map(Ans::IndexOf),
        2 => (0u64..10).prop_map(|n| Ans::Val(J::UInt(n))),
        1 => Just(Ans::Val(J::Absent)),
        1 => Just(Ans::Val(J::Null)),
        2 => any::<Index>().prop_map(Ans::TextOf),
        1 => Just(Ans::Val(J::s("B"))),
        1 => Just(Ans::Val(J::Neg(-1))),
        1 => select(vec!["1.0", "2.5", "1e0", "18446744073709551616"]).prop_map(|f| Ans::Val(J::Float(f))),
        1 => Just(Ans::Val(J::Bool)),
    ]
    .boxed()
}

fn text_answer() -> BoxedStrategy<Ans> {
    prop_oneof![
        8 => any::<Index>().prop_map(Ans::TextOf),
        1 => Just(Ans::Val(J::s("nope"))),
        1 => Just(Ans::Val(J::Absent)),
        1 => Just(Ans::Val(J::UInt(1))),
        1 => Just(Ans::Val(J::Null)),
    ]
    .boxed()
}

/// Raw top-level elements that are not objects.
const NOT_OBJECTS: [&str; 6] = ["7", "\"x\"", "[1]", "null", "true", "[]"];

/// The options rule of src/data: 2 to 8, none blank, distinct once trimmed.
fn options_ok(o: &[String]) -> bool {
    let trimmed: BTreeSet<&str> = o.iter().map(|s| s.trim()).collect();
    (2..=8).contains(&o.len()) && o.iter().all(|s| !s.trim().is_empty()) && trimmed.len() == o.len()
}

#[derive(Debug, Clone, PartialEq)]
struct WantSample {
    id: String,
    task: Option<String>,
    video: PathBuf,
    question: String,
    options: Vec<String>,
    answer: Option<usize>,
    window: Option<(f64, f64)>,
}

#[derive(Debug, Clone)]
enum Want {
    Good(WantSample),
    /// id, task, texts the reason must contain
    Bad(String, String, Vec<String>),
}

fn window_of(start: &J, end: &J) -> Option<(f64, f64)> {
    match (start.number(), end.number()) {
        (None, None) => None,
        (s, e) => Some((s.unwrap_or(0.0), e.unwrap_or(f64::INFINITY))),
    }
}

fn seconds_ok(v: &J) -> bool {
    v.is_unset() || v.number().is_some()
}

/// Compares a loaded dataset with the reference outcomes, in order.
fn check_dataset(ds: &Dataset, want: &[Want], context: &str) -> Result<(), TestCaseError> {
    let goods: Vec<&WantSample> = want
        .iter()
        .filter_map(|w| match w {
            Want::Good(s) => Some(s),
            _ => None,
        })
        .collect();
    let bads: Vec<(&String, &String, &Vec<String>)> = want
        .iter()
        .filter_map(|w| match w {
            Want::Bad(id, task, needles) => Some((id, task, needles)),
            _ => None,
        })
        .collect();
    prop_assert_eq!(
        ds.samples.len() + ds.bad.len(),
        want.len(),
        "every record is one sample or one bad record\n{}",
        context
    );
    let got_ids: Vec<&str> = ds.samples.iter().map(|s| s.id.as_str()).collect();
    let want_ids: Vec<&str> = goods.iter().map(|s| s.id.as_str()).collect();
    prop_assert_eq!(
        &got_ids,
        &want_ids,
        "samples (bad: {:?})\n{}",
        ds.bad,
        context
    );
    for (s, w) in ds.samples.iter().zip(&goods) {
        let got = WantSample {
            id: s.id.clone(),
            task: s.task.clone(),
            video: s.video.clone(),
            question: s.question.clone(),
            options: s.options.clone(),
            answer: s.answer,
            window: s.window.map(|w| (w.start, w.end)),
        };
        prop_assert_eq!(&got, *w, "{}", context);
    }
    let bad_ids: Vec<(&str, &str)> = ds
        .bad
        .iter()
        .map(|b| (b.id.as_str(), b.task.as_str()))
        .collect();
    let want_bad: Vec<(&str, &str)> = bads
        .iter()
        .map(|(i, t, _)| (i.as_str(), t.as_str()))
        .collect();
    prop_assert_eq!(&bad_ids, &want_bad, "bad records {:?}\n{}", ds.bad, context);
    for (b, (_, _, needles)) in ds.bad.iter().zip(&bads) {
        prop_assert!(
            contains_all(&b.reason, needles),
            "reason {:?} should name {:?}\n{}",
            b.reason,
            needles,
            context
        );
    }
    dataset_invariants(ds)
}

/// What holds of any loaded dataset: unique ids; 2 to 8 options, none blank, distinct after
/// trimming; the answer an option index; every bad record's reason names its .json file.
fn dataset_invariants(ds: &Dataset) -> Result<(), TestCaseError> {
    let mut ids = HashSet::new();
    for s in &ds.samples {
        prop_assert!(ids.insert(s.id.clone()), "sample id {:?} twice", s.id);
        prop_assert!(options_ok(&s.options), "options {:?}", s.options);
        prop_assert!(s.answer.is_none_or(|a| a < s.options.len()));
    }
    for b in &ds.bad {
        prop_assert!(
            b.reason.contains(".json"),
            "reason names no file: {:?}",
            b.reason
        );
    }
    Ok(())
}

/// Ways a whole file can be unreadable.
#[derive(Debug, Clone)]
enum Breakage {
    WrongTop,
    Utf16,
    Truncate(Index),
    BadUtf8(Index),
    Trailing,
}

fn breakage() -> BoxedStrategy<Breakage> {
    prop_oneof![
        Just(Breakage::WrongTop),
        Just(Breakage::Utf16),
        any::<Index>().prop_map(Breakage::Truncate),
        any::<Index>().prop_map(Breakage::BadUtf8),
        Just(Breakage::Trailing),
    ]
    .boxed()
}

/// The file's bytes: `text` (a list or object), maybe behind a BOM, or broken.
fn file_bytes(text: &str, bom: bool, broken: Option<&Breakage>, wrong_top: &str) -> Vec<u8> {
    let mut b: Vec<u8> = Vec::new();
    if bom {
        b.extend_from_slice("\u{feff}".as_bytes());
    }
    match broken {
        None => b.extend_from_slice(text.as_bytes()),
        Some(Breakage::WrongTop) => b.extend_from_slice(wrong_top.as_bytes()),
        Some(Breakage::Utf16) => {
            b = vec![0xff, 0xfe];
            for u in text.encode_utf16() {
                b.extend_from_slice(&u.to_le_bytes());
            }
        }
        Some(Breakage::Truncate(i)) => {
            b.extend_from_slice(text.as_bytes());
            let keep = i.index(b.len() - 1);
            b.truncate(keep.max(usize::from(bom) * 3 + 1).min(b.len() - 1));
        }
        Some(Breakage::BadUtf8(i)) => {
            b.extend_from_slice(text.as_bytes());
            let at = i.index(b.len() + 1);
            b.insert(at, 0xff);
        }
        Some(Breakage::Trailing) => {
            b.extend_from_slice(text.as_bytes());
            b.extend_from_slice(b" x");
        }
    }
    b
}

// ---- JSON sample lists --------------------------------------------------------------------

#[derive(Debug, Clone)]
struct SRec {
    raw: Option<&'static str>,
    id: J,
    task: J,
    video: J,
    question: J,
    options: J,
    answer: Ans,
    start: J,
    end: J,
    unknown: bool,
    dup: Option<Index>,
}

fn srec() -> BoxedStrategy<SRec> {
    (
        proptest::option::weighted(0.05, select(NOT_OBJECTS.to_vec())),
        prop_oneof![
            10 => select(vec!["a", "b", "c", "0", "1", "2", "3", "s/1", "é"]).prop_map(J::s),
            20 => "[a-z]{2,6}".prop_map(J::Str),
            6 => Just(J::Absent),
            2 => Just(J::Null),
            1 => Just(J::UInt(3)),
        ],
        prop_oneof![
            10 => Just(J::Absent),
            10 => select(vec!["t1", "t2"]).prop_map(J::s),
            2 => Just(J::Null),
            1 => Just(J::UInt(5)),
        ],
        string_j(vec!["a.mp4", "clips/b.mp4", "missing.mp4"]),
        string_j(vec!["Q?", "What happens first?", "视频", "  "]),
        options_j(),
        index_answer(),
        seconds_j(),
        seconds_j(),
        proptest::bool::weighted(0.05),
        proptest::option::weighted(0.05, any::<Index>()),
    )
        .prop_map(
            |(raw, id, task, video, question, options, answer, start, end, unknown, dup)| SRec {
                raw,
                id,
                task,
                video,
                question,
                options,
                answer,
                start,
                end,
                unknown,
                dup,
            },
        )
        .boxed()
}

impl SRec {
    fn fields(&self) -> (Vec<(&'static str, J)>, J) {
        let answer = self.answer.value(&self.options);
        (
            vec![
                ("id", self.id.clone()),
                ("task", self.task.clone()),
                ("video", self.video.clone()),
                ("question", self.question.clone()),
                ("options", self.options.clone()),
                ("answer", answer.clone()),
                ("start", self.start.clone()),
                ("end", self.end.clone()),
            ],
            answer,
        )
    }

    fn render(&self) -> String {
        if let Some(r) = self.raw {
            return r.to_string();
        }
        let (fields, _) = self.fields();
        let refs: Vec<(&str, &J)> = fields.iter().map(|(k, v)| (*k, v)).collect();
        let extra: &[(&str, &str)] = if self.unknown {
            &[("colour", "1")]
        } else {
            &[]
        };
        render_object(&refs, self.dup, extra)
    }
}

/// The reference classifier for a JSON sample list (docs of `load_samples` and src/data).
fn want_samples(recs: &[SRec], file: &Path) -> Vec<Want> {
    let base = file.parent().unwrap();
    let fname = file.display().to_string();
    let mut claimed = HashSet::new();
    recs.iter()
        .enumerate()
        .map(|(i, r)| {
            let explicit = if r.raw.is_none() { r.id.str() } else { None };
            let id = explicit.map_or_else(|| i.to_string(), String::from);
            let task = if r.raw.is_none() {
                r.task.str().unwrap_or("").to_string()
            } else {
                String::new()
            };
            let needles = vec![fname.clone(), format!("record {i}: ")];
            if !claimed.insert(id.clone()) {
                return Want::Bad(format!("{id}#{i}"), task, needles);
            }
            let bad = || Want::Bad(id.clone(), task.clone(), needles.clone());
            if r.raw.is_some() || r.unknown {
                return bad();
            }
            let (fields, answer) = r.fields();
            let refs: Vec<(&str, &J)> = fields.iter().map(|(k, v)| (*k, v)).collect();
            if has_dup(&refs, &r.dup) {
                return bad();
            }
            let id_ok = r.id.is_unset() || r.id.str().is_some();
            let task_ok = r.task.is_unset() || r.task.str().is_some();
            let (Some(video), Some(question), Some(options)) =
                (r.video.str(), r.question.str(), r.options.strings())
            else {
                return bad();
            };
            if !id_ok || !task_ok || !seconds_ok(&r.start) || !seconds_ok(&r.end) {
                return bad();
            }
            if !options_ok(&options) {
                return bad();
            }
            let answer = match &answer {
                J::Absent | J::Null => None,
                J::Str(t) => match options.iter().position(|o| o == t) {
                    Some(k) => Some(k),
                    None => return bad(),
                },
                J::UInt(k) if (*k as usize) < options.len() => Some(*k as usize),
                _ => return bad(),
            };
            Want::Good(WantSample {
                id: id.clone(),
                task: r.task.str().map(String::from),
                video: base.join(video),
                question: question.to_string(),
                options,
                answer,
                window: window_of(&r.start, &r.end),
            })
        })
        .collect()
}

#[test]
fn prop_json_sample_lists() {
    check(
        "prop_json_sample_lists",
        128,
        (
            vec(srec(), 0..10),
            any::<bool>(),
            proptest::option::weighted(0.1, breakage()),
        ),
        |(recs, bom, broken), tally| {
            let tmp = tempfile::tempdir().unwrap();
            let file = tmp.path().join("samples.json");
            let text = format!(
                "[{}]",
                recs.iter()
                    .map(SRec::render)
                    .collect::<Vec<_>>()
                    .join(",\n ")
            );
            std::fs::write(
                &file,
                file_bytes(&text, bom, broken.as_ref(), "{\"id\": \"a\"}"),
            )
            .unwrap();
            let got = load(&DataSpec::Json(file.clone()), None);
            match (broken, got) {
                (Some(_), Err(e)) => {
                    let msg = e.to_string();
                    prop_assert!(msg.contains("samples.json"), "{}", msg);
                    tally.add("file-error");
                }
                (Some(b), Ok(ds)) => {
                    return Err(TestCaseError::fail(format!(
                        "a broken file ({b:?}) loaded: {ds:?}"
                    )))
                }
                (None, Err(e)) => return Err(TestCaseError::fail(format!("refused: {e}\n{text}"))),
                (None, Ok(ds)) => {
                    check_dataset(&ds, &want_samples(&recs, &file), &text)?;
                    tally.add(&format!("samples {}", ds.samples.len().min(3)));
                }
            }
            Ok(())
        },
    );
}

// ---- TVBench ------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct TvRec {
    raw: Option<&'static str>,
    qid: J,
    video: J,
    question: J,
    candidates: J,
    answer: Ans,
    start: J,
    end: J,
    extra: bool,
    dup: Option<Index>,
}

fn tvrec() -> BoxedStrategy<TvRec> {
    (
        proptest::option::weighted(0.05, select(NOT_OBJECTS.to_vec())),
        prop_oneof![
            4 => select(vec!["q1", "q2", "1", "0", "2"]).prop_map(J::s),
            12 => "q[0-9]{2,4}".prop_map(J::Str),
            2 => (0u64..3).prop_map(J::UInt),
            1 => Just(J::Neg(-1)),
            1 => Just(J::Float("2.5")),
            3 => Just(J::Absent),
            1 => Just(J::Null),
            1 => Just(J::Bool),
            1 => Just(J::List(vec![])),
        ],
        prop_oneof![
            30 => select(vec!["a.mp4", "b.mp4", "sub/c.mp4"]).prop_map(J::s),
            1 => select(vec!["missing.mp4", "dir.mp4", ""]).prop_map(J::s),
            1 => Just(J::Absent),
            1 => Just(J::UInt(1)),
        ],
        string_j(vec!["Q?", "How many?", "视频"]),
        options_j(),
        text_answer(),
        seconds_j(),
        seconds_j(),
        proptest::bool::weighted(0.2),
        proptest::option::weighted(0.05, any::<Index>()),
    )
        .prop_map(
            |(raw, qid, video, question, candidates, answer, start, end, extra, dup)| TvRec {
                raw,
                qid,
                video,
                question,
                candidates,
                answer,
                start,
                end,
                extra,
                dup,
            },
        )
        .boxed()
}

impl TvRec {
    fn fields(&self) -> Vec<(&'static str, J)> {
        vec![
            ("question_id", self.qid.clone()),
            ("video", self.video.clone()),
            ("question", self.question.clone()),
            ("candidates", self.candidates.clone()),
            ("answer", self.answer.value(&self.candidates)),
            ("start", self.start.clone()),
            ("end", self.end.clone()),
        ]
    }
    fn render(&self) -> String {
        if let Some(r) = self.raw {
            return r.to_string();
        }
        let fields = self.fields();
        let refs: Vec<(&str, &J)> = fields.iter().map(|(k, v)| (*k, v)).collect();
        // Other fields are ignored by the TVBench loader.
        let extra: &[(&str, &str)] = if self.extra {
            &[("accurate_start", "{\"a\": [1]}")]
        } else {
            &[]
        };
        render_object(&refs, self.dup, extra)
    }
}

const TASKS: [&str; 5] = ["action_count", "Action Count", "üñí", "x.y", "t1"];

/// The video names that exist as files under `video/<task>/` (see `tvbench_folder`).
const TV_VIDEOS: [&str; 3] = ["a.mp4", "b.mp4", "sub/c.mp4"];

fn want_tvbench(dir: &Path, files: &[(&'static str, Vec<TvRec>)]) -> Vec<Want> {
    let mut sorted: Vec<&(&str, Vec<TvRec>)> = files.iter().collect();
    sorted.sort_by_key(|(t, _)| format!("{t}.json"));
    let mut out = Vec::new();
    for (task, recs) in sorted {
        let file = dir.join("json").join(format!("{task}.json"));
        let mut claimed = HashSet::new();
        for (i, r) in recs.iter().enumerate() {
            let qid = if r.raw.is_none() { &r.qid } else { &J::Absent };
            let id = match qid {
                J::Str(s) => format!("{task}/{s}"),
                J::UInt(n) => format!("{task}/{n}"),
                J::Neg(n) => format!("{task}/{n}"),
                J::Float(f) => format!("{task}/{f}"),
                _ => format!("{task}/{i}"),
            };
            let needles = vec![file.display().to_string(), format!("record {i}: ")];
            let bad = |id: String| Want::Bad(id, task.to_string(), needles.clone());
            if !claimed.insert(id.clone()) {
                out.push(bad(format!("{id}#{i}")));
                continue;
            }
            if r.raw.is_some() {
                out.push(bad(id));
                continue;
            }
            let fields = r.fields();
            let refs: Vec<(&str, &J)> = fields.iter().map(|(k, v)| (*k, v)).collect();
            let answer = r.answer.value(&r.candidates);
            let qid_ok = matches!(
                qid,
                J::Absent | J::Null | J::Str(_) | J::UInt(_) | J::Neg(_) | J::Float(_)
            );
            let (Some(video), Some(question), Some(cands), Some(ans)) = (
                r.video.str(),
                r.question.str(),
                r.candidates.strings(),
                answer.str(),
            ) else {
                out.push(bad(id));
                continue;
            };
            let good = !has_dup(&refs, &r.dup)
                && qid_ok
                && seconds_ok(&r.start)
                && seconds_ok(&r.end)
                && options_ok(&cands)
                && TV_VIDEOS.contains(&video);
            let index = cands.iter().position(|c| c == ans);
            match (good, index) {
                (true, Some(k)) => out.push(Want::Good(WantSample {
                    id,
                    task: Some(task.to_string()),
                    video: dir.join("video").join(task).join(video),
                    question: question.to_string(),
                    options: cands,
                    answer: Some(k),
                    window: window_of(&r.start, &r.end),
                })),
                _ => out.push(bad(id)),
            }
        }
    }
    out
}

fn tvbench_folder(dir: &Path, files: &[(&'static str, Vec<TvRec>)]) {
    std::fs::create_dir_all(dir.join("json")).unwrap();
    for (task, _) in files {
        let v = dir.join("video").join(task);
        std::fs::create_dir_all(v.join("sub")).unwrap();
        std::fs::create_dir_all(v.join("dir.mp4")).unwrap();
        for name in TV_VIDEOS {
            std::fs::write(v.join(name), b"").unwrap();
        }
    }
    // Beside the annotations: a hidden AppleDouble file and a text file, both to be skipped.
    std::fs::write(dir.join("json/._t1.json"), b"\x00\x05\x16\x07\xff").unwrap();
    std::fs::write(dir.join("json/notes.txt"), b"not json").unwrap();
}

#[test]
fn prop_tvbench_folders() {
    let files = subsequence(TASKS.to_vec(), 1..=3).prop_flat_map(|tasks| {
        let n = tasks.len();
        (
            Just(tasks),
            vec(vec(tvrec(), 0..8), n..=n),
            vec(any::<bool>(), n..=n),
        )
    });
    check(
        "prop_tvbench_folders",
        64,
        (
            files,
            proptest::option::weighted(0.1, (any::<Index>(), breakage())),
        ),
        |((tasks, recs, boms), broken), tally| {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path();
            let files: Vec<(&'static str, Vec<TvRec>)> = tasks.into_iter().zip(recs).collect();
            tvbench_folder(dir, &files);
            let broken_file = broken.as_ref().map(|(i, _)| i.index(files.len()));
            let mut texts = String::new();
            for (k, (task, recs)) in files.iter().enumerate() {
                let text = format!(
                    "[{}]",
                    recs.iter()
                        .map(TvRec::render)
                        .collect::<Vec<_>>()
                        .join(",\n ")
                );
                let b = broken
                    .as_ref()
                    .filter(|_| broken_file == Some(k))
                    .map(|(_, b)| b);
                std::fs::write(
                    dir.join("json").join(format!("{task}.json")),
                    file_bytes(&text, boms[k], b, "{}"),
                )
                .unwrap();
                texts += &format!("{task}.json: {text}\n");
            }
            match (
                broken_file,
                load(&DataSpec::Tvbench(dir.to_path_buf()), None),
            ) {
                (Some(k), Err(e)) => {
                    let msg = e.to_string();
                    prop_assert!(msg.contains(&format!("{}.json", files[k].0)), "{}", msg);
                    tally.add("file-error");
                }
                (Some(_), Ok(ds)) => {
                    return Err(TestCaseError::fail(format!("a broken file loaded: {ds:?}")))
                }
                (None, Err(e)) => {
                    return Err(TestCaseError::fail(format!("refused: {e}\n{texts}")))
                }
                (None, Ok(ds)) => {
                    check_dataset(&ds, &want_tvbench(dir, &files), &texts)?;
                    tally.add(&format!("samples {}", ds.samples.len().min(3)));
                }
            }
            Ok(())
        },
    );
}

// ---- TOMATO -------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct TomRec {
    raw: Option<&'static str>,
    question: J,
    options: J,
    answer: Ans,
    key: J,
    demonstration_type: J,
    extra: bool,
    dup: Option<Index>,
}

fn tomrec() -> BoxedStrategy<TomRec> {
    (
        proptest::option::weighted(0.05, select(NOT_OBJECTS.to_vec())),
        string_j(vec!["How many?", "Q?"]),
        options_j(),
        index_answer(),
        string_j(vec!["k1", "k1", "k2", "nokey"]),
        string_j(vec!["human", "human", "human", "sim", "missing"]),
        proptest::bool::weighted(0.2),
        proptest::option::weighted(0.05, any::<Index>()),
    )
        .prop_map(
            |(raw, question, options, answer, key, demonstration_type, extra, dup)| TomRec {
                raw,
                question,
                options,
                answer,
                key,
                demonstration_type,
                extra,
                dup,
            },
        )
        .boxed()
}

impl TomRec {
    fn fields(&self) -> Vec<(&'static str, J)> {
        vec![
            ("question", self.question.clone()),
            ("options", self.options.clone()),
            ("answer", self.answer.value(&self.options)),
            ("key", self.key.clone()),
            ("demonstration_type", self.demonstration_type.clone()),
        ]
    }
    fn render(&self) -> String {
        if let Some(r) = self.raw {
            return r.to_string();
        }
        let fields = self.fields();
        let refs: Vec<(&str, &J)> = fields.iter().map(|(k, v)| (*k, v)).collect();
        let extra: &[(&str, &str)] = if self.extra {
            &[("motion_type", "\"camera\"")]
        } else {
            &[]
        };
        render_object(&refs, self.dup, extra)
    }
}

const TOMATO_KEYS: [&str; 30] = [
    "a", "b", "c", "0", "10", "9", "é", "e\u{301}", "x\"y", "sp ace", "d", "e", "f", "g", "h", "i",
    "j", "k", "l", "m", "n", "o", "p", "1", "2", "3", "4", "5", "6", "7",
];
/// (demonstration_type, key) pairs whose video exists.
const TOMATO_VIDEOS: [(&str, &str); 3] = [("human", "k1"), ("human", "k2"), ("sim", "k1")];

/// A key as JSON text, optionally with every character written as a \u escape (the same key to
/// a JSON reader, so repeats must still be found).
fn json_key(k: &str, escaped: bool) -> String {
    if !escaped {
        return json(k);
    }
    let mut s = String::from("\"");
    for u in k.encode_utf16() {
        s += &format!("\\u{u:04x}");
    }
    s + "\""
}

type TomFile = (&'static str, Vec<(&'static str, bool, TomRec)>);

fn want_tomato(dir: &Path, files: &[TomFile]) -> Vec<Want> {
    let mut sorted: Vec<&TomFile> = files.iter().collect();
    sorted.sort_by_key(|(t, _)| format!("{t}.json"));
    let mut out = Vec::new();
    for (task, entries) in sorted {
        let file = dir.join("data").join(format!("{task}.json"));
        let mut by_key: BTreeMap<&str, Vec<&TomRec>> = BTreeMap::new();
        for (k, _, r) in entries {
            by_key.entry(k).or_default().push(r);
        }
        for (key, recs) in by_key {
            let id = format!("{task}/{key}");
            let mut needles = vec![file.display().to_string(), format!("record {key:?}: ")];
            if recs.len() > 1 {
                needles.push(format!("used by {} records", recs.len()));
                out.push(Want::Bad(id, task.to_string(), needles));
                continue;
            }
            let r = recs[0];
            let bad = || Want::Bad(id.clone(), task.to_string(), needles.clone());
            if r.raw.is_some() {
                out.push(bad());
                continue;
            }
            let fields = r.fields();
            let refs: Vec<(&str, &J)> = fields.iter().map(|(k, v)| (*k, v)).collect();
            let (Some(question), Some(options), Some(vkey), Some(dt)) = (
                r.question.str(),
                r.options.strings(),
                r.key.str(),
                r.demonstration_type.str(),
            ) else {
                out.push(bad());
                continue;
            };
            let answer = match r.answer.value(&r.options) {
                J::UInt(k) if (k as usize) < options.len() => Some(k as usize),
                _ => None,
            };
            let good = !has_dup(&refs, &r.dup)
                && options_ok(&options)
                && TOMATO_VIDEOS.contains(&(dt, vkey));
            match (good, answer) {
                (true, Some(a)) => out.push(Want::Good(WantSample {
                    id,
                    task: Some(task.to_string()),
                    video: dir.join("videos").join(dt).join(format!("{vkey}.mp4")),
                    question: question.to_string(),
                    options,
                    answer: Some(a),
                    window: None,
                })),
                _ => out.push(bad()),
            }
        }
    }
    out
}

#[test]
fn prop_tomato_folders() {
    let files = subsequence(TASKS.to_vec(), 1..=3).prop_flat_map(|tasks| {
        let n = tasks.len();
        (
            Just(tasks),
            vec(
                vec(
                    (
                        select(TOMATO_KEYS.to_vec()),
                        proptest::bool::weighted(0.2),
                        tomrec(),
                    ),
                    0..8,
                ),
                n..=n,
            ),
            vec(any::<bool>(), n..=n),
        )
    });
    check(
        "prop_tomato_folders",
        64,
        (
            files,
            proptest::option::weighted(0.1, (any::<Index>(), breakage())),
        ),
        |((tasks, entries, boms), broken), tally| {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path();
            std::fs::create_dir_all(dir.join("data")).unwrap();
            for (dt, key) in TOMATO_VIDEOS {
                std::fs::create_dir_all(dir.join("videos").join(dt)).unwrap();
                std::fs::write(dir.join("videos").join(dt).join(format!("{key}.mp4")), b"")
                    .unwrap();
            }
            std::fs::create_dir_all(dir.join("videos/sim/k2.mp4")).unwrap();
            std::fs::write(dir.join("data/.hidden.json"), b"{").unwrap();
            let files: Vec<TomFile> = tasks.into_iter().zip(entries).collect();
            let broken_file = broken.as_ref().map(|(i, _)| i.index(files.len()));
            let mut texts = String::new();
            for (k, (task, entries)) in files.iter().enumerate() {
                let text = format!(
                    "{{{}}}",
                    entries
                        .iter()
                        .map(|(key, esc, r)| format!("{}: {}", json_key(key, *esc), r.render()))
                        .collect::<Vec<_>>()
                        .join(",\n ")
                );
                let b = broken
                    .as_ref()
                    .filter(|_| broken_file == Some(k))
                    .map(|(_, b)| b);
                std::fs::write(
                    dir.join("data").join(format!("{task}.json")),
                    file_bytes(&text, boms[k], b, "[]"),
                )
                .unwrap();
                texts += &format!("{task}.json: {text}\n");
            }
            match (
                broken_file,
                load(&DataSpec::Tomato(dir.to_path_buf()), None),
            ) {
                (Some(k), Err(e)) => {
                    let msg = e.to_string();
                    prop_assert!(msg.contains(&format!("{}.json", files[k].0)), "{}", msg);
                    tally.add("file-error");
                }
                (Some(_), Ok(ds)) => {
                    return Err(TestCaseError::fail(format!("a broken file loaded: {ds:?}")))
                }
                (None, Err(e)) => {
                    return Err(TestCaseError::fail(format!("refused: {e}\n{texts}")))
                }
                (None, Ok(ds)) => {
                    check_dataset(&ds, &want_tomato(dir, &files), &texts)?;
                    tally.add(&format!("samples {}", ds.samples.len().min(3)));
                }
            }
            Ok(())
        },
    );
}

// ---- Any bytes ----------------------------------------------------------------------------

const BYTE_SNIPPETS: [&[u8]; 18] = [
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b"\"",
    b":",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"\xff",
    b"\xef\xbb\xbf",
    b"\x00",
    b"null",
    b"1e999",
    b"-",
    b"\"id\": \"a\", ",
    b"[[[[[[[[",
];

#[derive(Debug, Clone)]
enum ByteMut {
    Insert(Index, usize),
    Delete(Index, usize),
    Dup(Index, usize),
    Flip(Index, u8),
}

#[test]
fn prop_sample_list_bytes_load_or_fail_cleanly() {
    let m = prop_oneof![
        3 => (any::<Index>(), 0..BYTE_SNIPPETS.len()).prop_map(|(i, s)| ByteMut::Insert(i, s)),
        2 => (any::<Index>(), 1..20usize).prop_map(|(i, n)| ByteMut::Delete(i, n)),
        1 => (any::<Index>(), 1..40usize).prop_map(|(i, n)| ByteMut::Dup(i, n)),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| ByteMut::Flip(i, b)),
    ];
    check(
        "prop_sample_list_bytes_load_or_fail_cleanly",
        256,
        (vec(srec(), 0..6), vec(m, 1..6)),
        |(recs, muts), tally| {
            let mut b = format!(
                "[{}]",
                recs.iter().map(SRec::render).collect::<Vec<_>>().join(", ")
            )
            .into_bytes();
            for m in &muts {
                let n = b.len();
                match m {
                    ByteMut::Insert(i, s) => {
                        let at = i.index(n + 1);
                        b.splice(at..at, BYTE_SNIPPETS[*s].iter().copied());
                    }
                    ByteMut::Delete(i, len) if n > 0 => {
                        let at = i.index(n);
                        b.drain(at..(at + len).min(n));
                    }
                    ByteMut::Dup(i, len) if n > 0 => {
                        let at = i.index(n);
                        let piece: Vec<u8> = b[at..(at + len).min(n)].to_vec();
                        b.splice(at..at, piece);
                    }
                    ByteMut::Flip(i, x) if n > 0 => b[i.index(n)] = *x,
                    _ => {}
                }
            }
            let tmp = tempfile::tempdir().unwrap();
            let file = tmp.path().join("s.json");
            std::fs::write(&file, &b).unwrap();
            // serde_json, an independent reader, on the same bytes (a leading UTF-8 BOM dropped).
            let plain = b.strip_prefix(b"\xef\xbb\xbf".as_slice()).unwrap_or(&b);
            let reference = serde_json::from_slice::<serde_json::Value>(plain);
            match (reference, load(&DataSpec::Json(file.clone()), None)) {
                (Ok(serde_json::Value::Array(items)), Ok(ds)) => {
                    prop_assert_eq!(ds.samples.len() + ds.bad.len(), items.len());
                    dataset_invariants(&ds)?;
                    tally.add("list");
                }
                (Ok(serde_json::Value::Array(_)), Err(e)) => {
                    return Err(TestCaseError::fail(format!(
                        "serde_json reads a list, the loader refuses: {e}\n{}",
                        String::from_utf8_lossy(&b)
                    )))
                }
                (_, Ok(ds)) => {
                    return Err(TestCaseError::fail(format!(
                        "not a JSON list for serde_json, yet loaded: {ds:?}\n{}",
                        String::from_utf8_lossy(&b)
                    )))
                }
                (_, Err(e)) => {
                    let msg = e.to_string();
                    prop_assert!(msg.contains("s.json"), "{}", msg);
                    tally.add("error");
                }
            }
            Ok(())
        },
    );
}

#[test]
fn prop_data_spec_strings() {
    let s = prop_oneof![
        2 => (select(vec!["tvbench", "tomato", "json", "TVBench", "csv", ""]), select(vec![":", "", "::"]), "[a-z/.]{0,10}")
            .prop_map(|(k, c, p)| format!("{k}{c}{p}")),
        1 => "[a-z:./]{0,12}(\\.json)?",
        1 => any::<String>(),
    ];
    check("prop_data_spec_strings", 128, s, |s, tally| {
        let known = s
            .split_once(':')
            .filter(|(k, _)| ["tvbench", "tomato", "json"].contains(k));
        match (known, s.ends_with(".json"), s.parse::<DataSpec>()) {
            (Some((k, p)), _, Ok(spec)) => {
                let want = match k {
                    "tvbench" => DataSpec::Tvbench(p.into()),
                    "tomato" => DataSpec::Tomato(p.into()),
                    _ => DataSpec::Json(p.into()),
                };
                prop_assert_eq!(&spec, &want);
                prop_assert_eq!(spec.to_string().parse::<DataSpec>().unwrap(), spec);
                tally.add("kind");
            }
            (None, true, Ok(spec)) => {
                prop_assert_eq!(spec, DataSpec::Json(s.clone().into()));
                tally.add("bare json");
            }
            (None, false, Err(e)) => {
                prop_assert!(e.to_string().contains("tvbench:DIR"));
                tally.add("error");
            }
            (k, j, got) => {
                return Err(TestCaseError::fail(format!(
                    "{s:?} ({k:?}, {j}) gave {got:?}"
                )))
            }
        }
        Ok(())
    });
}

// =============================================================================================
// Regression cases (bugs the properties found, minimised) and robustness checks
// =============================================================================================

/// `options=KxN` whose token count K·N overflows: the product wrapped (to 0 for 2^32 x 2^32) in
/// release builds, passed the `K·N < question` check, and the 2^32 option spans of 2^32
/// positions each were allocated (an abort, or the machine's memory). Found by
/// prop_layout_specs_match_the_reference.
#[test]
fn regression_layout_option_token_count_overflow() {
    for spec in [
        "system=1,frames=1x1x1,question=5,template=1,options=4294967296x4294967296",
        "system=1,frames=1x1x1,question=5,template=1,options=9223372036854775808x2",
        "system=1,frames=1x1x1,question=5,template=1,options=4294967296x4294967296,answer=3",
    ] {
        let (r, largest, _) = measured(|| SequenceGroups::from_shape_spec(spec, None));
        let e = r.expect_err(spec).to_string();
        assert!(e.contains("question=5 must be longer"), "{e}");
        assert!(largest < 1 << 16, "{spec}: {largest} bytes at once");
    }
}

/// A pathway config with an absurd `num_layers` and one rule: each rule's layer set was
/// allocated at that size before anything else was checked (1e12 layers: an abort). Found by
/// prop_pathway_configs_match_the_reference.
#[test]
fn regression_pathway_config_absurd_num_layers() {
    for n in [1_000_000_000_000u64, MAX_NUM_LAYERS as u64 + 1] {
        let text =
            format!("num_layers: {n}\nrules:\n  - {{source: video, target: last, blocked: all}}\n");
        let (r, largest, _) = measured(|| PathwayConfig::from_yaml(&text, Path::new("cfg.yaml")));
        let e = r.unwrap_err().to_string();
        assert!(
            e.starts_with("cfg.yaml: ") && e.contains("num_layers") && e.contains(&n.to_string()),
            "{e}"
        );
        assert!(largest < 1 << 16, "{largest} bytes at once");
    }
    let ok = format!(
        "num_layers: {MAX_NUM_LAYERS}\nrules:\n  - {{source: video, target: last, blocked: all}}\n"
    );
    assert!(PathwayConfig::from_yaml(&ok, Path::new("cfg.yaml")).is_ok());
}

/// Tokens made only of spaces: the byte-level post-processor trims spaces off token offsets, so
/// such a token came back zero-width at the byte after it and was grouped by that byte: the last
/// space of "what  " went to `question` only (not `question.text`), that of "red " to
/// `question` only, and the last of "blue  " to `template`. Found by prop_prompt_segmentation.
#[test]
fn regression_prompt_space_tokens_keep_their_span() {
    let (m, b) = tiny_builder();
    let case = PromptCase {
        question: "what  ".into(),
        options: vec!["red ".into(), "blue  ".into()],
        answer: Some(1),
    };
    let opts: Vec<&str> = case.options.iter().map(String::as_str).collect();
    let l = b.layout(&case.question, &opts, case.answer).unwrap();
    let g = &l.groups;
    assert_eq!(decode_positions(&b, &l, &g.question_text), " what  ");
    assert_eq!(decode_positions(&b, &l, &g.options[0]), "(A) red ");
    assert_eq!(decode_positions(&b, &l, &g.options[1]), "(B) blue  ");
    assert_eq!(decode_positions(&b, &l, &g.template[..1]), "\n");
    let r = my_render(&m.prompt, &case.question, &case.options);
    check_layout_groups(&b, &m, TokKind::Tiny, &case, &r, &l).unwrap();
}

/// serde_yaml bounds alias expansion ("billion laughs"): refused quickly, not expanded.
#[test]
fn yaml_alias_bomb_is_refused() {
    let mut text = String::from(
        "num_layers: 1\nrules:\n  - {source: video, target: last, blocked: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]}\n",
    );
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 9].join(", ");
        text += &format!("  - {{source: video, target: last, blocked: &a{i} [{refs}]}}\n");
    }
    let start = Instant::now();
    let e = PathwayConfig::from_yaml(&text, Path::new("bomb.yaml")).unwrap_err();
    assert!(e.to_string().starts_with("bomb.yaml: "), "{e}");
    assert!(start.elapsed().as_secs() < 10);
}

/// JSON nested deeper than serde_json's recursion limit is an error naming the file, not a stack
/// overflow.
#[test]
fn deeply_nested_json_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("deep.json");
    std::fs::write(&file, "[".repeat(200_000) + &"]".repeat(200_000)).unwrap();
    let e = load(&DataSpec::Json(file), None).unwrap_err().to_string();
    assert!(e.contains("deep.json"), "{e}");
}
