//! Prompt rendering, tokenization and token groups, on two tiny tokenizers committed under
//! `tests/fixtures/tokenizers/` (regenerate with `make_tokenizers.py` there):
//! a GPT-2 / Qwen style byte-level BPE and a Llama style SentencePiece BPE with byte fallback.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use vidflow::package::manifest::{
    FrameSampling, PromptSpec, ResizeFilter, ResizeMode, SpecialTokens, VideoSpec,
};
use vidflow::prompt::{PromptBuilder, PromptLayout};
use vidflow::Error;

const FRAMES: usize = 4;
const GRID_H: usize = 2;
const GRID_W: usize = 3;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tokenizers")
        .join(name)
}

fn video_spec() -> VideoSpec {
    VideoSpec {
        num_frames: FRAMES,
        frame_height: 32,
        frame_width: 32,
        resize_mode: ResizeMode::Stretch,
        resize_filter: ResizeFilter::Bicubic,
        rescale_factor: 1.0 / 255.0,
        image_mean: [0.5; 3],
        image_std: [0.5; 3],
        grid_h: GRID_H,
        grid_w: GRID_W,
        sampling: FrameSampling::SegmentMiddle,
        frames_per_group: 1,
        trailing_tokens: 0,
    }
}

fn labels() -> Vec<String> {
    "ABCDEFGH".chars().map(|c| c.to_string()).collect()
}

/// LLaVA / MVBench style prompt.
fn llava_prompt() -> PromptSpec {
    PromptSpec {
        system: "A chat between a curious user and an artificial intelligence assistant. ".into(),
        user_prefix: "USER: ".into(),
        video_placeholder: "<video>".into(),
        after_video: "\n".into(),
        question_prefix: "Question: ".into(),
        options_header: "\nOptions:\n".into(),
        option_format: "({label}) {text}".into(),
        option_separator: "\n".into(),
        option_labels: labels(),
        instruction: "\nOnly give the best option.".into(),
        assistant_prefix: " ASSISTANT: ".into(),
        answer_prefix: "Best option:(".into(),
        frame_prefix: String::new(),
        frame_suffix: String::new(),
        frame_separator: String::new(),
    }
}

/// Qwen style prompt (chat markers written as plain text in this toy tokenizer).
fn qwen_prompt() -> PromptSpec {
    PromptSpec {
        system: "system\nYou are a helpful assistant.\n".into(),
        user_prefix: "user\n".into(),
        video_placeholder: "<|video_pad|>".into(),
        after_video: "\n".into(),
        question_prefix: "Question: ".into(),
        options_header: "\nOptions:\n".into(),
        option_format: "({label}) {text}".into(),
        option_separator: "\n".into(),
        option_labels: labels(),
        instruction: "\nOnly give the best option.".into(),
        assistant_prefix: "\nassistant\n".into(),
        answer_prefix: "Best option: (".into(),
        frame_prefix: String::new(),
        frame_suffix: String::new(),
        frame_separator: String::new(),
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    SentencePiece,
    ByteLevel,
}

const KINDS: [Kind; 2] = [Kind::SentencePiece, Kind::ByteLevel];

fn builder_with(kind: Kind, prompt: PromptSpec) -> PromptBuilder {
    let (file, bos) = match kind {
        Kind::SentencePiece => ("sentencepiece_bpe.json", Some(1)),
        Kind::ByteLevel => ("byte_level_bpe.json", None),
    };
    let path = fixture(file);
    let tok = tokenizers::Tokenizer::from_file(&path).unwrap();
    let video_id = tok.token_to_id(&prompt.video_placeholder).unwrap() as i64;
    let special = SpecialTokens {
        video_token_id: video_id,
        bos_token_id: bos,
        eos_token_id: None,
        pad_token_id: None,
    };
    PromptBuilder::from_parts(&prompt, &special, &video_spec(), &path).unwrap()
}

fn builder(kind: Kind) -> PromptBuilder {
    match kind {
        Kind::SentencePiece => builder_with(kind, llava_prompt()),
        Kind::ByteLevel => builder_with(kind, qwen_prompt()),
    }
}

fn decode(b: &PromptBuilder, l: &PromptLayout, positions: &[usize]) -> String {
    let ids: Vec<u32> = positions
        .iter()
        .map(|&p| l.token_id_at(p).expect("not a video position") as u32)
        .collect();
    b.tokenizer().decode(&ids, true).unwrap()
}

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn strictly_increasing(v: &[usize]) -> bool {
    v.windows(2).all(|w| w[0] < w[1])
}

/// Checks every structural property of a layout, and that each group decodes to its text.
fn check(b: &PromptBuilder, question: &str, options: &[&str], answer: usize) -> PromptLayout {
    let l = b.layout(question, options, Some(answer)).unwrap();
    let g = &l.groups;
    let n = FRAMES * GRID_H * GRID_W;
    let p = l.placeholder_index;
    let s = l.seq_len;
    let ctx = format!("question {question:?}, options {options:?}");

    assert_eq!(s, l.input_ids.len() - 1 + n, "{ctx}");
    assert_eq!(l.input_ids.len(), l.input_offsets.len());
    assert_eq!(
        l.input_ids
            .iter()
            .filter(|&&i| i
                == b.tokenizer()
                    .token_to_id(&b.spec().video_placeholder)
                    .unwrap() as i64)
            .count(),
        1
    );
    assert_eq!(l.token_id_at(p), None);
    assert_eq!(l.token_id_at(s - 1), l.input_ids.last().copied());

    // Top-level partition of 0..S.
    assert_eq!(g.system, (0..p).collect::<Vec<_>>());
    assert_eq!(g.video, (p..p + n).collect::<Vec<_>>());
    assert_eq!(g.last, vec![s - 1]);
    let mut all: Vec<usize> = [&g.system, &g.video, &g.question, &g.template, &g.last]
        .iter()
        .flat_map(|v| v.iter().copied())
        .collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..s).collect::<Vec<_>>(),
        "{ctx}: top-level groups must partition 0..S"
    );
    for (name, v) in [
        ("question", &g.question),
        ("question.text", &g.question_text),
        ("template", &g.template),
        ("option.false", &g.option_false),
    ] {
        assert!(strictly_increasing(v), "{ctx}: {name} not sorted");
    }
    // Frames tile the video in order.
    assert_eq!(g.frames.len(), FRAMES);
    for (i, f) in g.frames.iter().enumerate() {
        let a = p + i * GRID_H * GRID_W;
        assert_eq!(f, &(a..a + GRID_H * GRID_W).collect::<Vec<_>>());
    }
    // Sub-groups of question: disjoint, non-empty, in prompt order.
    let q: BTreeSet<usize> = g.question.iter().copied().collect();
    let mut seen = BTreeSet::new();
    let mut prev_max = 0;
    for (k, v) in std::iter::once(&g.question_text)
        .chain(&g.options)
        .enumerate()
    {
        assert!(!v.is_empty(), "{ctx}: sub-group {k} empty");
        assert!(strictly_increasing(v));
        assert!(
            v.iter().all(|x| q.contains(x)),
            "{ctx}: sub-group {k} outside question"
        );
        assert!(
            v.iter().all(|x| seen.insert(*x)),
            "{ctx}: sub-groups overlap"
        );
        assert!(
            v[0] > prev_max || k == 0,
            "{ctx}: sub-group {k} out of order"
        );
        prev_max = *v.last().unwrap();
    }
    assert!(g.question.iter().all(|&x| x > p + n - 1));
    assert!(g.template.iter().all(|&x| x > p + n - 1));
    assert_eq!(g.option_true, g.options[answer]);
    let mut f: Vec<usize> = (0..options.len())
        .filter(|&j| j != answer)
        .flat_map(|j| g.options[j].clone())
        .collect();
    f.sort_unstable();
    assert_eq!(g.option_false, f);

    // Decoding. Option groups are the option text exactly unless a token straddles its boundary,
    // in which case the group holds the whole token (boundary rule).
    let straddles = |positions: &[usize], span: &std::ops::Range<usize>| {
        positions.iter().any(|&pos| {
            let k = if pos < p { pos } else { pos + 1 - n };
            let r = &l.input_offsets[k];
            r.start < span.start || r.end > span.end
        })
    };
    let r = &l.rendered;
    for (j, o) in r.options.iter().enumerate() {
        assert_eq!(r.slice(&o.text), options[j]);
        // Option spans carry their label, as the reference marks them: "(A) text".
        let text = r.slice(&o.full);
        assert_eq!(text, format!("({}) {}", o.label, options[j]));
        let got = decode(b, &l, &g.options[j]);
        if straddles(&g.options[j], &o.full) {
            assert!(
                got.contains(text.trim()),
                "{ctx}: option {j} decodes to {got:?}"
            );
        } else {
            assert_eq!(got.trim(), text.trim(), "{ctx}: option {j}");
        }
    }
    let got = decode(b, &l, &g.question_text);
    if straddles(&g.question_text, &r.question_text) {
        assert!(
            got.contains(question.trim()),
            "{ctx}: question.text decodes to {got:?}"
        );
    } else {
        assert_eq!(got.trim(), question.trim(), "{ctx}: question.text");
    }
    // The question group is the whole block from "Question:" through the last option.
    let got = squash(&decode(b, &l, &g.question));
    let block = squash(r.slice(&r.question_block));
    if straddles(&g.question, &r.question_block) {
        assert!(got.contains(&block), "{ctx}: question decodes to {got:?}");
    } else {
        assert_eq!(got, block, "{ctx}: question");
    }
    let spec = b.spec();
    assert_eq!(
        squash(&decode(b, &l, &g.system)),
        squash(&format!("{}{}", spec.system, spec.user_prefix)),
        "{ctx}: system"
    );
    let tail = format!(
        "{}{}{}",
        spec.instruction, spec.assistant_prefix, spec.answer_prefix
    );
    let template_and_last = format!("{}{}", spec.after_video, tail);
    let mut t = g.template.clone();
    t.push(s - 1);
    let got = squash(&decode(b, &l, &t));
    if straddles(&g.question, &r.question_block) {
        // Characters of a straddling token went to the question; the rest is template.
        assert!(
            squash(&template_and_last).ends_with(&got),
            "{ctx}: template decodes to {got:?}"
        );
    } else {
        assert_eq!(got, squash(&template_and_last), "{ctx}: template + last");
    }

    // The answer tokens: one per option, distinct, each decoding to its label. (A label missing
    // from the SentencePiece vocabulary is its byte-fallback token, e.g. `<0x46>` for "F".)
    assert_eq!(l.option_token_ids.len(), options.len());
    for (j, id) in l.option_token_ids.iter().enumerate() {
        let label = &spec.option_labels[j];
        assert_eq!(b.tokenizer().decode(&[*id as u32], true).unwrap(), *label);
        if let Some(v) = b.tokenizer().token_to_id(label) {
            assert_eq!(v, *id as u32, "{ctx}: label {label}");
        }
    }
    let distinct: BTreeSet<i64> = l.option_token_ids.iter().copied().collect();
    assert_eq!(distinct.len(), options.len());
    l
}

#[test]
fn two_to_eight_options() {
    let pool = [
        "opening the door",
        "closing the door",
        "sitting on the chair",
        "walking away",
        "picking up the cup",
        "throwing the ball",
        "jumping twice",
        "turning left",
    ];
    for kind in KINDS {
        let b = builder(kind);
        for n in 2..=8 {
            for answer in [0, n - 1] {
                let l = check(
                    &b,
                    "What is the person doing in the video?",
                    &pool[..n],
                    answer,
                );
                assert_eq!(l.groups.options.len(), n);
            }
        }
    }
}

#[test]
fn punctuation_slashes_digits_and_non_ascii() {
    let options = [
        "left/right, then up/down",
        "3.5 m/s (approx.)",
        "café au lait — très chaud!",
        "日本語のテキスト",
        "50% of 2 x 7 = 7",
        "Ünïcødé “quoted” ø",
        "it's the dog's ball; isn't it?",
    ];
    for kind in KINDS {
        let b = builder(kind);
        check(&b, "Wie schnell fährt das Auto? (km/h, ≈)", &options, 2);
        check(&b, "Which one: 1/2, 3/4 or 5/6?", &options[..3], 0);
    }
}

#[test]
fn option_text_also_inside_the_question() {
    for kind in KINDS {
        let b = builder(kind);
        let q = "Did the man open the door before he could close the door?";
        let l = check(&b, q, &["open the door", "close the door"], 1);
        // The option spans are the options, not their copies inside the question.
        let q_last = *l.groups.question_text.last().unwrap();
        assert!(l.groups.options[0][0] > q_last && l.groups.options[1][0] > q_last);
    }
}

#[test]
fn option_that_is_a_prefix_of_another() {
    for kind in KINDS {
        let b = builder(kind);
        let l = check(
            &b,
            "What moved first?",
            &["red", "red car", "red car door", "the red"],
            2,
        );
        // Longer options hold more tokens than their prefixes.
        assert!(l.groups.options[0].len() < l.groups.options[1].len());
        assert!(l.groups.options[1].len() < l.groups.options[2].len());
    }
}

#[test]
fn straddling_tokens_follow_the_boundary_rule() {
    // In the SentencePiece fixture "▁option:" and "▁option." are single pieces. With the question
    // ending in "option" and the header starting with ":", one token straddles question text and
    // header; with the last option ending in "option" and the instruction starting with ".", one
    // token straddles the option and the instruction. Both belong to the content span.
    let mut spec = llava_prompt();
    spec.options_header = ":\nOptions:\n".into();
    spec.instruction = ".\nOnly give the best option.".into();
    let b = builder_with(Kind::SentencePiece, spec);
    let l = check(
        &b,
        "Which is the best option",
        &["red", "the best option"],
        0,
    );
    let tok = b.tokenizer();
    let piece = |pos: usize| tok.id_to_token(l.token_id_at(pos).unwrap() as u32).unwrap();
    assert_eq!(piece(*l.groups.question_text.last().unwrap()), "▁option:");
    assert_eq!(piece(*l.groups.options[1].last().unwrap()), "▁option.");
}

#[test]
fn layout_basics_and_group_names() {
    let b = builder(Kind::SentencePiece);
    let l = b
        .layout("What happened?", &["a", "b", "c"], Some(1))
        .unwrap();
    assert_eq!(l.input_ids[0], 1, "bos first");
    assert_eq!(l.placeholder_index, l.groups.system.len());
    assert_eq!(l.num_video_tokens(), 24);
    assert_eq!(
        l.spliced_position(l.placeholder_index + 1),
        l.placeholder_index + 24
    );
    assert_eq!(l.group("frame[3]").unwrap(), l.groups.frames[3].as_slice());
    assert_eq!(
        l.group("option[2]").unwrap(),
        l.groups.options[2].as_slice()
    );
    assert_eq!(
        l.group("option.true").unwrap(),
        l.groups.options[1].as_slice()
    );
    assert_eq!(l.group("last").unwrap(), &[l.seq_len - 1]);
    for name in l.group_names() {
        assert!(l.group(&name).is_ok(), "{name}");
    }
    assert!(matches!(l.group("frame[4]"), Err(Error::Input(m)) if m.contains("0..4")));
    assert!(
        matches!(l.group("video.text"), Err(Error::Input(m)) if m.contains("unknown token group"))
    );
    // The last position is the "(" of the answer prefix, read by the model to emit the letter.
    assert_eq!(decode(&b, &l, &l.groups.last), "(");

    let no_answer = b.layout("What happened?", &["a", "b"], None).unwrap();
    assert!(no_answer.groups.option_true.is_empty());
    assert!(matches!(no_answer.group("option.true"), Err(Error::Input(m)) if m.contains("answer")));
    assert!(!no_answer
        .group_names()
        .contains(&"option.false".to_string()));
}

fn prompt_err(r: vidflow::Result<PromptLayout>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => {
            let msg = e.to_string();
            eprintln!("{msg}");
            msg
        }
    }
}

#[test]
fn errors_are_clear() {
    let b = builder(Kind::SentencePiece);
    let msg = prompt_err(b.layout("Q?", &["only one"], None));
    assert!(
        msg.contains("1 answer options given, expected 2 to 8"),
        "{msg}"
    );
    let nine = ["x"; 9];
    let msg = prompt_err(b.layout("Q?", &nine, None));
    assert!(msg.contains("9 answer options"), "{msg}");
    let msg = prompt_err(b.layout("Q?", &["a", "  "], None));
    assert!(msg.contains("option B text \"  \" is empty"), "{msg}");
    let msg = prompt_err(b.layout("", &["a", "b"], None));
    assert!(msg.contains("question text \"\" is empty"), "{msg}");
    let msg = prompt_err(b.layout("Q?", &["a", "b"], Some(2)));
    assert!(
        msg.contains("answer index 2 is out of range for 2 options"),
        "{msg}"
    );
    let msg = prompt_err(b.layout("What does <video> show?", &["a", "b"], None));
    assert!(msg.contains("appears 2 times"), "{msg}");

    // Fewer labels than options.
    let mut spec = llava_prompt();
    spec.option_labels = vec!["A".into(), "B".into()];
    let msg =
        prompt_err(builder_with(Kind::SentencePiece, spec).layout("Q?", &["a", "b", "c"], None));
    assert!(msg.contains("only 2 labels"), "{msg}");

    // An option format without {text}.
    let mut spec = llava_prompt();
    spec.option_format = "({label})".into();
    let msg = prompt_err(builder_with(Kind::SentencePiece, spec).layout("Q?", &["a", "b"], None));
    assert!(msg.contains("contains {text} 0 times"), "{msg}");

    // A placeholder the tokenizer does not know as one token.
    let path = fixture("sentencepiece_bpe.json");
    let special = SpecialTokens {
        video_token_id: 672,
        bos_token_id: Some(1),
        eos_token_id: None,
        pad_token_id: None,
    };
    let mut spec = llava_prompt();
    spec.video_placeholder = "<image>".into();
    let b = PromptBuilder::from_parts(&spec, &special, &video_spec(), &path).unwrap();
    let msg = prompt_err(b.layout("Q?", &["a", "b"], None));
    assert!(
        msg.contains("\"<image>\" tokenizes to ids [") && msg.contains("video_token_id 672"),
        "{msg}"
    );
    assert!(msg.contains("sentencepiece_bpe.json"), "{msg}");

    // A wrong video token id.
    let special = SpecialTokens {
        video_token_id: 5,
        ..special
    };
    let b = PromptBuilder::from_parts(&llava_prompt(), &special, &video_spec(), &path).unwrap();
    let msg = prompt_err(b.layout("Q?", &["a", "b"], None));
    assert!(
        msg.contains("expected exactly one token with video_token_id 5"),
        "{msg}"
    );

    // Missing or broken tokenizer files.
    let missing = fixture("no_such_tokenizer.json");
    let e =
        PromptBuilder::from_parts(&llava_prompt(), &special, &video_spec(), &missing).unwrap_err();
    assert!(
        matches!(&e, Error::Tokenizer { path, msg } if path == &missing && msg == "file not found"),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("tokenizer.json");
    std::fs::write(&broken, "{not json").unwrap();
    let e =
        PromptBuilder::from_parts(&llava_prompt(), &special, &video_spec(), &broken).unwrap_err();
    assert!(
        e.to_string().contains("cannot load as a HF tokenizer.json"),
        "{e}"
    );
}

#[test]
fn rendering_is_the_documented_concatenation() {
    let b = builder(Kind::SentencePiece);
    let r = b.render("What happened?", &["a", "b"]).unwrap();
    assert_eq!(
        r.text,
        "A chat between a curious user and an artificial intelligence assistant. USER: <video>\n\
         Question: What happened?\nOptions:\n(A) a\n(B) b\nOnly give the best option. ASSISTANT: \
         Best option:("
    );
    assert_eq!(r.slice(&r.placeholders[0]), "<video>");
    assert_eq!(r.slice(&r.question_text), "What happened?");
    assert_eq!(
        r.slice(&r.question_block),
        "Question: What happened?\nOptions:\n(A) a\n(B) b"
    );
    assert_eq!(r.slice(&r.options[1].full), "(B) b");
    assert_eq!(r.slice(&r.options[1].text), "b");
}

/// VideoLLaMA3-style video: `Time {t}s:` before each frame's placeholder, `,` between frames.
fn per_frame_prompt() -> PromptSpec {
    let mut p = qwen_prompt();
    p.frame_prefix = "Time {t}s:".into();
    p.frame_separator = ",".into();
    p
}

#[test]
fn per_frame_text_is_video_and_in_no_frame() {
    let b = builder_with(Kind::ByteLevel, per_frame_prompt());
    let times = [0.0, 2.5, 5.04, 7.55];
    let l = b
        .layout_at("What happened?", &["a", "b"], Some(0), &times)
        .unwrap();
    // The text, written out by hand (7.55 is 7.549999... in binary: one decimal rounds it down).
    let video = "Time 0.0s:<|video_pad|>,Time 2.5s:<|video_pad|>,Time 5.0s:<|video_pad|>,\
                 Time 7.5s:<|video_pad|>";
    let text = format!(
        "system\nYou are a helpful assistant.\nuser\n{video}\nQuestion: What happened?\n\
         Options:\n(A) a\n(B) b\nOnly give the best option.\nassistant\nBest option: ("
    );
    assert_eq!(l.rendered.text, text);
    assert_eq!(l.rendered.slice(&l.rendered.video), video);
    assert_eq!(l.slots.len(), FRAMES);
    let per_frame = GRID_H * GRID_W;
    assert!(l.slots.iter().all(|s| s.rows == per_frame));
    assert_eq!(l.seq_len, l.input_ids.len() - FRAMES + FRAMES * per_frame);

    let g = &l.groups;
    // Each frame is exactly its placeholder's rows.
    for (i, f) in g.frames.iter().enumerate() {
        let start = l.spliced_position(l.slots[i].index);
        assert_eq!(
            *f,
            (start..start + per_frame).collect::<Vec<_>>(),
            "frame {i}"
        );
        assert!(f.iter().all(|&p| l.token_id_at(p).is_none()));
    }
    // The text between frames is video and video.sep, and decodes to the separators.
    let between = |a: usize, z: usize| -> Vec<usize> { (a..z).collect() };
    let first = l.video_range().start;
    assert_eq!(
        decode(&b, &l, &between(first, g.frames[0][0])),
        "Time 0.0s:"
    );
    for (i, want) in [",Time 2.5s:", ",Time 5.0s:", ",Time 7.5s:"]
        .iter()
        .enumerate()
    {
        let gap = between(g.frames[i].last().unwrap() + 1, g.frames[i + 1][0]);
        assert_eq!(
            decode(&b, &l, &gap),
            *want,
            "between frames {i} and {}",
            i + 1
        );
        assert!(gap.iter().all(|p| g.video_sep.contains(p)));
    }
    let frames: BTreeSet<usize> = g.frames.iter().flatten().copied().collect();
    let sep: Vec<usize> = g
        .video
        .iter()
        .copied()
        .filter(|p| !frames.contains(p))
        .collect();
    assert_eq!(g.video_sep, sep);
    assert_eq!(g.video, between(first, g.frames[3].last().unwrap() + 1));
    assert_eq!(
        decode(&b, &l, &g.system),
        "system\nYou are a helpful assistant.\nuser\n"
    );
    assert_eq!(
        g.question[0],
        l.video_range().end + 1,
        "after_video's newline is template"
    );
    assert_eq!(decode(&b, &l, &g.question_text).trim(), "What happened?");
    // Every text entry of input_ids sits where spliced_position says.
    for k in 0..l.input_ids.len() {
        if l.slots.iter().all(|s| s.index != k) {
            assert_eq!(l.token_id_at(l.spliced_position(k)), Some(l.input_ids[k]));
        }
    }
    // The default times are 0, 1, 2, ... seconds.
    let d = b.layout("What happened?", &["a", "b"], None).unwrap();
    assert!(d
        .rendered
        .text
        .contains("Time 0.0s:<|video_pad|>,Time 1.0s:<|video_pad|>,Time 2.0s:"));
}

#[test]
fn per_frame_prompts_need_one_time_per_frame() {
    let b = builder_with(Kind::ByteLevel, per_frame_prompt());
    let e = b
        .layout_at("What happened?", &["a", "b"], None, &[0.0, 1.0])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("2 frame times given for a prompt of 4 frames"),
        "{e}"
    );
    let e = b
        .layout_at(
            "What happened?",
            &["a", "b"],
            None,
            &[0.0, 1.0, f64::NAN, 3.0],
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("frame time NaN"), "{e}");
    // A question holding the placeholder adds one too many.
    let e = b
        .layout("Is <|video_pad|> here?", &["a", "b"], None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("appears 5 times in the prompt, expected 4 (one per frame)"),
        "{e}"
    );
}

#[test]
fn a_sample_shows_its_frames_times_and_other_prompts_are_laid_out_once() {
    use vidflow::answer::SampleInputs;
    use vidflow::video::{SampledFrames, VideoInput};
    let video = |indices: Vec<usize>| VideoInput {
        pixel_values: ndarray::Array4::zeros((FRAMES, 3, 32, 32)),
        sampled: SampledFrames {
            frames: Vec::new(),
            indices,
            total_frames: 30,
            fps: Some(2.0),
            decode_errors: 0,
        },
    };
    let q = "What happened?";
    // Per-frame text: laid out again at the sampled frames' times (index / 2 fps).
    let b = builder_with(Kind::ByteLevel, per_frame_prompt());
    let early = b.layout(q, &["a", "b"], None).unwrap();
    assert_eq!(early.frame_times, [0.0, 1.0, 2.0, 3.0]);
    let s = SampleInputs::new(video(vec![3, 9, 15, 21]), &video_spec(), early, |t| {
        b.layout_at(q, &["a", "b"], None, t)
    })
    .unwrap();
    assert_eq!(s.layout.frame_times, [1.5, 4.5, 7.5, 10.5]);
    assert!(s
        .layout
        .rendered
        .text
        .contains("Time 1.5s:<|video_pad|>,Time 4.5s:"));
    // A prompt that shows no times keeps its first layout.
    let b = builder(Kind::ByteLevel);
    let early = b.layout(q, &["a", "b"], None).unwrap();
    assert!(early.frame_times.is_empty());
    let s = SampleInputs::new(
        video(vec![3, 9, 15, 21]),
        &video_spec(),
        early.clone(),
        |_| -> vidflow::Result<PromptLayout> { panic!("laid out twice") },
    )
    .unwrap();
    assert_eq!(s.layout.input_ids, early.input_ids);
}
