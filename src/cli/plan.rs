//! `vidflow plan`: compile a pathway config into an execution plan and print what each layer
//! computes, with edge and FLOP counts against the full run.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use vidflow::package::Manifest;
use vidflow::pathway::{MaskSchedule, Pathways, SequenceGroups};
use vidflow::plan::{FlopModel, ModelShape, Plan, PlanReport};
use vidflow::prompt::{PromptBuilder, PromptLayout};

/// The question asked when none is given (four options, the first one correct).
pub const DEFAULT_QUESTION: &str = "What does the man do after the dog opens the door?";
pub const DEFAULT_OPTIONS: [&str; 4] = [
    "The man closes the box",
    "It moves left",
    "Nothing happens",
    "The dog stops",
];
/// The paper's text around the video: about 115 tokens in all.
pub const DEFAULT_SHAPE_LAYOUT: &str = "system=35,question=60,template=20";

#[derive(clap::Args)]
pub struct Args {
    /// Model package directory; the prompt layout comes from its tokenizer and template.
    #[arg(long, required_unless_present = "shape", conflicts_with = "shape")]
    model: Option<PathBuf>,
    /// Shape-only model description (configs/models/*.yaml), laid out by --layout.
    #[arg(long)]
    shape: Option<PathBuf>,
    /// Pathway config (YAML file) or random:RATIO[:SEED].
    #[arg(long)]
    config: String,
    /// Shape-only layout, e.g. system=35,frames=8x12x12,question=60,template=20 (frames default
    /// to the shape's video grid; optional options=KxN, answer=J).
    #[arg(long, requires = "shape")]
    layout: Option<String>,
    #[command(flatten)]
    prompt: PromptArgs,
    /// Map the config's layer numbers onto the model's layer count (layer centres).
    #[arg(long)]
    scale: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// The question of a layout built from a package's tokenizer.
#[derive(clap::Args, Clone)]
pub struct PromptArgs {
    /// Question text (default: a built-in temporal question).
    #[arg(long)]
    question: Option<String>,
    /// One option; repeat for each (default: four built-in options).
    #[arg(long = "option", alias = "options")]
    options: Vec<String>,
    /// 0-based index of the correct option (fills option.true / option.false).
    #[arg(long)]
    answer: Option<usize>,
}

impl PromptArgs {
    /// Renders and tokenizes the prompt with the package's tokenizer.
    pub fn layout(&self, manifest: &Manifest, package: &Path) -> anyhow::Result<PromptLayout> {
        let builder = PromptBuilder::new(manifest, package)?;
        if self.question.is_none() && !self.options.is_empty() {
            bail!("--option needs --question (without one, the built-in question and its four options are used)");
        }
        let (question, options, answer) = match &self.question {
            Some(q) => {
                if self.options.len() < 2 {
                    bail!("--question needs at least two --option values");
                }
                (q.clone(), self.options.clone(), self.answer)
            }
            None => (
                DEFAULT_QUESTION.to_string(),
                DEFAULT_OPTIONS.iter().map(|s| s.to_string()).collect(),
                Some(self.answer.unwrap_or(0)),
            ),
        };
        let opts: Vec<&str> = options.iter().map(String::as_str).collect();
        Ok(builder.layout(&question, &opts, answer)?)
    }
}

/// Parses `--config`, scaled to `num_layers` when asked.
pub fn pathways(config: &str, scale: bool, num_layers: usize) -> anyhow::Result<Pathways> {
    let p = Pathways::parse(config)?;
    Ok(if scale { p.scaled_to(num_layers) } else { p })
}

/// Reads a package's manifest without opening any graph.
pub fn manifest(package: &Path) -> anyhow::Result<Manifest> {
    Manifest::from_file(&package.join("model.yaml"))
        .with_context(|| format!("reading the package {}", package.display()))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (shape, groups) = match (&args.model, &args.shape) {
        (Some(dir), _) => {
            // clap's `requires = "shape"` is not enforced next to `--model` (it conflicts with
            // `--shape`), so a layout would be silently ignored.
            if args.layout.is_some() {
                bail!(
                    "--layout describes a --shape model's sequence; with --model the layout \
                     comes from the package's tokenizer (use --question/--option)"
                );
            }
            let m = manifest(dir)?;
            let layout = args.prompt.layout(&m, dir)?;
            (
                ModelShape::from_manifest(&m),
                SequenceGroups::from_prompt(&layout),
            )
        }
        (None, Some(file)) => {
            let p = &args.prompt;
            if p.question.is_some() || !p.options.is_empty() || p.answer.is_some() {
                bail!(
                    "--question, --option and --answer need --model (a tokenizer); a --shape \
                     model's layout is given by --layout (e.g. options=4x8,answer=1)"
                );
            }
            let shape = ModelShape::from_file(file)?;
            let spec = args.layout.as_deref().unwrap_or(DEFAULT_SHAPE_LAYOUT);
            let groups = SequenceGroups::from_shape_spec(spec, Some(shape.frames()))?;
            shape.check_sequence_length(groups.seq_len())?;
            (shape, groups)
        }
        (None, None) => bail!("give --model PACKAGE or --shape MODEL.yaml"),
    };
    let pathways = pathways(&args.config, args.scale, shape.num_layers)?;
    let schedule: MaskSchedule = pathways.resolve(&groups, shape.num_layers)?;
    let plan = Plan::compile(&schedule);
    let report = PlanReport::new(
        &shape.name,
        &pathways.describe(),
        &plan,
        &FlopModel::new(&shape),
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}
