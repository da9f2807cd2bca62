//! `drift definitions validate|test|push|pull DIR`: definitions kept in git, tested, brought to a running
//! gateway through its API (so CI needs a key, not database access). Each file is first held
//! to the definition language's JSON Schema, so a misspelt field is named where it is.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use drift_core::dsl::Definition;
use drift_core::simulate::cases::{Case, TestFile, check};
use drift_core::simulate::{Limits, Report, simulate};
use drift_server::client::{Client, refused as fail};
use drift_server::config::GatewayClientArgs;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Args, Debug, Clone)]
pub struct DefinitionsArgs {
    #[command(subcommand)]
    pub action: DefinitionsCmd,
}

#[derive(Subcommand, Debug, Clone)]
pub enum DefinitionsCmd {
    /// Checks a folder (`*.json` workflows, `nodes/*.json` node definitions): each file
    /// against the definition language's JSON Schema (each mistake with its place), then all
    /// of them on the gateway (references, published nodes), each error with its node and
    /// field. Exit 1 if any.
    Validate {
        dir: PathBuf,
        /// Only the schema check, with the schema built into this binary: no gateway needed
        /// (e.g. a pre-commit hook). References and node inputs are not checked.
        #[arg(long)]
        offline: bool,
        #[command(flatten)]
        gateway: GatewayClientArgs,
    },
    /// Runs the folder's definition tests and validates the whole folder, then saves each
    /// definition as its SNAPSHOT, publishes those that changed and activates them. Nothing is
    /// changed if a test fails or anything is invalid.
    Push {
        dir: PathBuf,
        /// Publish, but leave ACTIVE where it is.
        #[arg(long)]
        no_activate: bool,
        #[command(flatten)]
        gateway: GatewayClientArgs,
    },
    /// Runs the folder's definition tests (`ID.test.json` beside `ID.json`: cases of params,
    /// answers and stubbed responses, and what must hold) through the workflow's interpreter,
    /// here (the default) or on the gateway's `simulate` (`--remote`). Prints each case; exit
    /// 1 naming the case, step and expectation of each failure.
    Test {
        dir: PathBuf,
        /// Simulate on the gateway (its published nodes, its version of the interpreter)
        /// instead of here.
        #[arg(long)]
        remote: bool,
        #[command(flatten)]
        gateway: GatewayClientArgs,
    },
    /// Writes the gateway's definitions into a folder (workflows as `ID.json`, node
    /// definitions as `nodes/ID.json`).
    Pull {
        dir: PathBuf,
        /// Which version of each: ACTIVE, LATEST or SNAPSHOT.
        #[arg(long, default_value = "ACTIVE")]
        version: String,
        #[command(flatten)]
        gateway: GatewayClientArgs,
    },
}

/// A folder's definitions as written, each with the file it came from.
struct Folder {
    workflows: Vec<(PathBuf, Value)>,
    nodes: Vec<(PathBuf, Value)>,
}

/// The files of `dir` that `keep` takes, in name order.
fn files(dir: &Path, keep: impl Fn(&Path) -> bool) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && keep(p))
        .collect();
    files.sort();
    Ok(files)
}

/// A folder's definition files (its tests aside).
fn json_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    files(dir, |p| {
        p.extension().is_some_and(|e| e == "json") && !drift_core::dsl::is_test_file(p)
    })
}

fn read(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut v: Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let obj = v
        .as_object_mut()
        .with_context(|| format!("{} is not a JSON object", path.display()))?;
    // Versions are numbered by the gateway at publish.
    obj.remove("version");
    if !obj.get("id").is_some_and(Value::is_string) {
        bail!("{} has no \"id\"", path.display());
    }
    Ok(v)
}

fn load(dir: &Path) -> anyhow::Result<Folder> {
    let mut f = Folder {
        workflows: vec![],
        nodes: vec![],
    };
    for p in json_files(dir)? {
        f.workflows.push((p.clone(), read(&p)?));
    }
    let nodes = dir.join("nodes");
    if nodes.is_dir() {
        for p in json_files(&nodes)? {
            f.nodes.push((p.clone(), read(&p)?));
        }
    }
    if f.workflows.is_empty() && f.nodes.is_empty() {
        bail!("{} holds no definitions (*.json, nodes/*.json)", dir.display());
    }
    Ok(f)
}

fn id_of(v: &Value) -> &str {
    v["id"].as_str().unwrap_or_default()
}

/// The definition language's schema as the gateway serves it, so the check matches the
/// gateway's version.
async fn gateway_schema(c: &Client) -> anyhow::Result<Value> {
    let (status, schema) = c.call(Method::GET, "/v3/schemas/definition.json", None).await?;
    if !status.is_success() {
        return Err(fail("reading the definition schema", status, &schema));
    }
    Ok(schema)
}

/// Holds each file to the schema; prints every mistake with its place in the file (a JSON
/// pointer); true if all fit.
fn fits_schema(schema: &Value, f: &Folder) -> anyhow::Result<bool> {
    let validator = |root: &str| {
        let mut s = schema.clone();
        s["$ref"] = json!(format!("#/$defs/{root}"));
        jsonschema::draft202012::new(&s).map_err(|e| anyhow::anyhow!("the definition schema does not compile: {e}"))
    };
    let mut fits = true;
    for (kind, root, items) in [
        ("node", "NodeResource", &f.nodes),
        ("workflow", "Definition", &f.workflows),
    ] {
        let v = validator(root)?;
        for (file, def) in items {
            for e in v.iter_errors(def) {
                fits = false;
                let at = e.instance_path().to_string();
                let at = if at.is_empty() { "/".to_string() } else { at };
                println!("SCHEMA  {kind} {} ({}): at {at}: {e}", id_of(def), file.display());
            }
        }
    }
    Ok(fits)
}

/// Validates the folder: each file against the schema, then all of them on the gateway
/// (references between them, the published nodes); prints every error; true if all are valid.
async fn validate(c: &Client, f: &Folder) -> anyhow::Result<bool> {
    if !fits_schema(&gateway_schema(c).await?, f)? {
        return Ok(false);
    }
    let body = json!({
        "workflows": f.workflows.iter().map(|(_, v)| v).collect::<Vec<_>>(),
        "nodes": f.nodes.iter().map(|(_, v)| v).collect::<Vec<_>>(),
    });
    let (status, r) = c.call(Method::POST, "/v3/definitions/validate", Some(&body)).await?;
    if !status.is_success() {
        return Err(fail("validating", status, &r));
    }
    let files: Vec<&PathBuf> = f.nodes.iter().chain(&f.workflows).map(|(p, _)| p).collect();
    for (result, file) in r["results"].as_array().into_iter().flatten().zip(files) {
        let errors = result["errors"].as_array().cloned().unwrap_or_default();
        if errors.is_empty() {
            println!(
                "ok      {} {} ({})",
                result["kind"].as_str().unwrap_or(""),
                result["id"].as_str().unwrap_or(""),
                file.display()
            );
        }
        for e in errors {
            println!(
                "INVALID {} {} ({}): node {}, field {}: {}",
                result["kind"].as_str().unwrap_or(""),
                result["id"].as_str().unwrap_or(""),
                file.display(),
                e["node"].as_str().unwrap_or("-"),
                e["field"].as_str().unwrap_or("-"),
                e["message"].as_str().unwrap_or("")
            );
        }
    }
    Ok(r["valid"] == true)
}

async fn push(c: &Client, f: &Folder, activate: bool) -> anyhow::Result<()> {
    for (base, items) in [("/v3/nodes", &f.nodes), ("/v3/definitions", &f.workflows)] {
        for (_, v) in items {
            let id = id_of(v);
            let p = c.publish(&format!("{base}/{id}"), id, v, activate).await?;
            let mut note = match p.changed {
                true => format!("published v{}", p.version),
                false => format!("unchanged (v{})", p.version),
            };
            if activate {
                note.push_str(", active");
            }
            println!(
                "{:<8} {id}: {note}",
                if base == "/v3/nodes" { "node" } else { "workflow" }
            );
        }
    }
    Ok(())
}

async fn pull(c: &Client, dir: &Path, version: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("nodes")).with_context(|| format!("creating {}", dir.display()))?;
    for (base, list, sub) in [("/v3/definitions", "definitions", ""), ("/v3/nodes", "nodes", "nodes")] {
        let (status, r) = c.call(Method::GET, base, None).await?;
        if !status.is_success() {
            return Err(fail("listing", status, &r));
        }
        for item in r[list].as_array().into_iter().flatten() {
            let id = id_of(item);
            let (status, body) = c
                .call(Method::GET, &format!("{base}/{id}?version={version}"), None)
                .await?;
            if status == StatusCode::NOT_FOUND {
                println!("skip     {id}: no {version} version");
                continue;
            }
            if !status.is_success() {
                return Err(fail(&format!("reading {id}"), status, &body));
            }
            let file = dir.join(sub).join(format!("{id}.json"));
            std::fs::write(&file, serde_json::to_string_pretty(&body)? + "\n")
                .with_context(|| format!("writing {}", file.display()))?;
            println!(
                "wrote    {} (v{})",
                file.display(),
                body["version"].as_str().unwrap_or("?")
            );
        }
    }
    Ok(())
}

/// One test file and the definition it tests.
struct TestSet {
    file: PathBuf,
    id: String,
    tests: TestFile,
}

fn test_sets(dir: &Path) -> anyhow::Result<Vec<TestSet>> {
    files(dir, drift_core::dsl::is_test_file)?
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let tests: TestFile = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a definition test file", file.display()))?;
            let stem = file
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".test.json"))
                .unwrap_or_default()
                .to_string();
            let id = tests.definition.clone().unwrap_or(stem);
            Ok(TestSet { file, id, tests })
        })
        .collect()
}

/// Where the cases are simulated.
enum Simulator<'a> {
    /// Here, on the folder's definitions.
    Local(drift_core::dsl::Registry),
    /// On a gateway, each case with the folder's definition as an unsaved one.
    Remote(&'a Client, &'a Folder),
}

/// One definition, ready for its cases.
enum Target<'a> {
    /// Compiled, with the children its CHILD nodes start.
    Local(Definition, BTreeMap<String, Definition>),
    /// As written in the folder, sent to the gateway with each case.
    Remote(&'a Client, &'a Value),
}

impl<'a> Simulator<'a> {
    /// The folder's definition `id`, found (and compiled) once for all its cases.
    fn target(&self, id: &str) -> anyhow::Result<Target<'a>> {
        let missing = || format!("no definition {id:?} in the folder");
        match self {
            Simulator::Local(reg) => {
                let def = reg.workflow(id, None).with_context(missing)?;
                let def = reg.compile(def).map_err(|e| anyhow::anyhow!("{id}: {e}"))?;
                let children = reg.children_of(&def).map_err(|e| anyhow::anyhow!("{id}: {e}"))?;
                Ok(Target::Local(def, children))
            }
            Simulator::Remote(c, folder) => {
                let def = folder.workflows.iter().map(|(_, v)| v).find(|v| id_of(v) == id);
                Ok(Target::Remote(c, def.with_context(missing)?))
            }
        }
    }
}

impl Target<'_> {
    async fn report(&self, id: &str, case: &Case) -> anyhow::Result<Report> {
        match self {
            Target::Local(def, children) => Ok(simulate(def, children, &case.scenario(), Limits::default())),
            Target::Remote(c, def) => {
                let mut body = serde_json::to_value(case.scenario())?;
                body["definition"] = (*def).clone();
                let (status, r) = c
                    .call(Method::POST, &format!("/v3/definitions/{id}/simulate"), Some(&body))
                    .await?;
                if !status.is_success() {
                    return Err(fail(&format!("simulating {id}"), status, &r));
                }
                serde_json::from_value(r).context("the gateway's simulation answer")
            }
        }
    }
}

/// Runs every case of the folder's test files and prints each; an error (after `what`)
/// naming how many failed.
async fn run_tests(dir: &Path, sets: &[TestSet], sim: &Simulator<'_>, what: &str) -> anyhow::Result<()> {
    let (mut passed, mut failed) = (0, 0);
    for set in sets.iter().filter(|s| !s.tests.cases.is_empty()) {
        let target = sim.target(&set.id)?;
        for case in &set.tests.cases {
            let report = target.report(&set.id, case).await?;
            let failures = check(&report, &case.expect);
            if failures.is_empty() {
                passed += 1;
                println!("ok      {}: {}", set.id, case.name);
                continue;
            }
            failed += 1;
            println!("FAIL    {}: {} ({})", set.id, case.name, set.file.display());
            for f in failures {
                println!("          {f}");
            }
        }
    }
    if passed + failed == 0 {
        println!("no definition tests in {} (*.test.json)", dir.display());
    } else {
        println!("{passed} passed, {failed} failed");
    }
    match failed {
        0 => Ok(()),
        n => bail!(
            "{what}{n} definition test case(s) in {} failed (listed above)",
            dir.display()
        ),
    }
}

/// Runs the folder's tests here (its definitions are loaded only when it has tests).
async fn tests_pass(dir: &Path, what: &str) -> anyhow::Result<()> {
    let sets = test_sets(dir)?;
    let reg = match sets.is_empty() {
        true => drift_core::dsl::Registry::default(),
        false => drift_core::dsl::Registry::load_dirs(&[dir.to_path_buf()])?,
    };
    run_tests(dir, &sets, &Simulator::Local(reg), what).await
}

pub async fn run(a: DefinitionsArgs) -> anyhow::Result<()> {
    match a.action {
        DefinitionsCmd::Validate { dir, offline: true, .. } => {
            let f = load(&dir)?;
            if !fits_schema(&drift_core::dsl::schema::definition_json_schema(), &f)? {
                bail!(
                    "{} has definitions that do not fit the schema (listed above)",
                    dir.display()
                );
            }
            println!(
                "ok      {} files fit the definition schema",
                f.workflows.len() + f.nodes.len()
            );
            Ok(())
        }
        DefinitionsCmd::Validate { dir, gateway, .. } => {
            let f = load(&dir)?;
            if !validate(&Client::new(&gateway)?, &f).await? {
                bail!("{} has invalid definitions (listed above)", dir.display());
            }
            Ok(())
        }
        DefinitionsCmd::Push {
            dir,
            no_activate,
            gateway,
        } => {
            let f = load(&dir)?;
            tests_pass(&dir, "nothing was pushed: ").await?;
            let c = Client::new(&gateway)?;
            if !validate(&c, &f).await? {
                bail!(
                    "nothing was pushed: {} has invalid definitions (listed above)",
                    dir.display()
                );
            }
            push(&c, &f, !no_activate).await
        }
        DefinitionsCmd::Test { dir, remote: false, .. } => tests_pass(&dir, "").await,
        DefinitionsCmd::Test { dir, gateway, .. } => {
            let (c, f) = (Client::new(&gateway)?, load(&dir)?);
            run_tests(&dir, &test_sets(&dir)?, &Simulator::Remote(&c, &f), "").await
        }
        DefinitionsCmd::Pull { dir, version, gateway } => pull(&Client::new(&gateway)?, &dir, &version).await,
    }
}
