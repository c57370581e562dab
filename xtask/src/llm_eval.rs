//! `cargo xtask llm-eval`: the LLM analyst against a small local model. Builds (or reuses) an
//! OpenAI-compatible llama.cpp server with the recipe of `--recipe DIR` (a folder with
//! `setup.sh` and `serve.sh`, such as the shared `llm/` recipe: llama-server and Gemma 3 270M,
//! all from PyPI), serves it on a free port, runs bundled scripts with `--analyze --analyst llm`
//! and again with the rules, and prints `marketsim eval` of both: per run the share of analyses
//! the model answered, the fallback reasons, prompt tokens (p50/max), latency (p50/p99), and
//! the eval figures of each analyst. CI does not run it (it takes minutes per script).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{marketsim, project_root, release_binary, run};

/// The scripts run when `--scripts` is not given: one supply, one demand and one platform
/// incident, a few minutes each with a 270M model on two cores.
const DEFAULT_SCRIPTS: &[&str] = &["supply-crisis", "viral-blog-post", "payment-outage"];
/// The window the recipe's server gives its model (`LLM_CTX` of serve.sh).
const CONTEXT_TOKENS: &str = "4096";
/// How long the server may take to answer `/health` after it starts.
const SERVER_START_BUDGET: Duration = Duration::from_secs(120);

struct Options {
    recipe: PathBuf,
    scripts: Vec<String>,
    timeout_ms: Option<u64>,
    keep: Option<PathBuf>,
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let root = project_root();
    let mut options = Options {
        recipe: std::env::var_os("MARKETSIM_LLM_RECIPE")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("../shared/llm")),
        scripts: DEFAULT_SCRIPTS.iter().map(|s| s.to_string()).collect(),
        timeout_ms: None,
        keep: None,
    };
    let usage = "usage: cargo xtask llm-eval [--recipe DIR] [--scripts a,b,…|all] [--timeout-ms MS] [--keep DIR]";
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let mut value = || {
            rest.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value; {usage}"))
        };
        match flag.as_str() {
            "--recipe" => options.recipe = PathBuf::from(value()?),
            "--scripts" => {
                let list = value()?;
                options.scripts = if list == "all" {
                    bundled_incident_scripts(&root)?
                } else {
                    list.split(',').map(|s| s.trim().to_string()).collect()
                };
            }
            "--timeout-ms" => {
                options.timeout_ms = Some(
                    value()?
                        .parse()
                        .map_err(|_| "--timeout-ms takes a whole number of milliseconds")?,
                )
            }
            "--keep" => options.keep = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown argument `{other}`; {usage}")),
        }
    }
    for name in &options.scripts {
        let path = root.join("scenarios").join(format!("{name}.yaml"));
        if !path.is_file() {
            return Err(format!("no bundled script {}", path.display()));
        }
    }
    if !options.recipe.join("setup.sh").is_file() || !options.recipe.join("serve.sh").is_file() {
        return Err(format!(
            "{} has no setup.sh and serve.sh: pass --recipe DIR (or MARKETSIM_LLM_RECIPE) with a \
             recipe that builds and serves an OpenAI-compatible server",
            options.recipe.display()
        ));
    }
    Ok(options)
}

/// The bundled scripts that stage incidents (every `scenarios/*.yaml` with a `scenarios:`
/// timeline, not the catalog, the event library or the quiet baselines).
fn bundled_incident_scripts(root: &Path) -> Result<Vec<String>, String> {
    let folder = root.join("scenarios");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&folder).map_err(|e| format!("{}: {e}", folder.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let is_script = path.extension().is_some_and(|e| e == "yaml")
            && text.contains("\nseed:")
            && !matches!(name, "baseline" | "normal-operations");
        if is_script {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// The server, stopped (SIGTERM, then kill) when dropped.
struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling a child process this task started and still owns.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    listener
        .local_addr()
        .map(|address| address.port())
        .map_err(|e| e.to_string())
}

/// Whether `GET /health` answers 200.
fn healthy(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request =
        format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    reply.starts_with("HTTP/1.1 200")
}

fn start_server(recipe: &Path, port: u16, log: &Path) -> Result<Server, String> {
    let mut setup = Command::new("bash");
    setup.arg(recipe.join("setup.sh")).current_dir(recipe);
    run(setup)?;
    let log_file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let log_copy = log_file.try_clone().map_err(|e| e.to_string())?;
    let child = Command::new("bash")
        .arg(recipe.join("serve.sh"))
        .arg(port.to_string())
        .current_dir(recipe)
        .stdout(Stdio::from(log_file))
        .stderr(Stdio::from(log_copy))
        .spawn()
        .map_err(|e| format!("cannot start serve.sh: {e}"))?;
    let mut server = Server { child };
    let started = Instant::now();
    while started.elapsed() < SERVER_START_BUDGET {
        if healthy(port) {
            eprintln!(
                "model server up on 127.0.0.1:{port} after {:.1} s",
                started.elapsed().as_secs_f64()
            );
            return Ok(server);
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            return Err(format!(
                "serve.sh exited with {status}; see {}",
                log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Err(format!(
        "the model server did not answer /health within {} s; see {}",
        SERVER_START_BUDGET.as_secs(),
        log.display()
    ))
}

/// `cargo xtask llm-eval [--recipe DIR] [--scripts a,b|all] [--timeout-ms MS] [--keep DIR]`.
pub fn llm_eval(args: &[String]) -> Result<(), String> {
    let options = parse_options(args)?;
    let root = project_root();
    let binary = release_binary(&root)?;
    let work = match &options.keep {
        Some(dir) => std::path::absolute(dir).map_err(|e| format!("{}: {e}", dir.display()))?,
        None => root.join(format!("target/llm-eval-{}", std::process::id())),
    };
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let result = evaluate(&binary, &work, &options);
    if options.keep.is_none() {
        let _ = std::fs::remove_dir_all(&work);
    }
    result
}

fn evaluate(binary: &Path, work: &Path, options: &Options) -> Result<(), String> {
    let port = free_port()?;
    let server = start_server(&options.recipe, port, &work.join("server.log"))?;
    let base_url = format!("http://127.0.0.1:{port}/v1");
    let mut llm_runs = Vec::new();
    let mut rules_runs = Vec::new();
    let mut wall = Vec::new();
    for name in &options.scripts {
        let script = project_root()
            .join("scenarios")
            .join(format!("{name}.yaml"));
        for analyst in ["llm", "rules"] {
            let out = work.join(analyst).join(name);
            let mut command = marketsim(binary);
            command
                .arg("run")
                .arg(&script)
                .arg("--out")
                .arg(&out)
                .args(["--analyze", "--quiet", "--force", "--analyst", analyst])
                .env("OPENAI_API_KEY", "local")
                .env("OPENAI_BASE_URL", &base_url)
                .env("MARKETSIM_LLM_MODEL", "gemma-3-270m")
                .env("MARKETSIM_LLM_CONTEXT_TOKENS", CONTEXT_TOKENS)
                .stdout(Stdio::null());
            if let Some(timeout) = options.timeout_ms {
                command.env("MARKETSIM_LLM_TIMEOUT_MS", timeout.to_string());
            }
            let started = Instant::now();
            run(command)?;
            let seconds = started.elapsed().as_secs_f64();
            eprintln!("{name} with {analyst}: {seconds:.1} s");
            if analyst == "llm" {
                wall.push((name.clone(), seconds));
                llm_runs.push(out);
            } else {
                rules_runs.push(out);
            }
        }
    }
    drop(server);
    for (label, runs) in [("llm", &llm_runs), ("rules", &rules_runs)] {
        println!("\n== --analyst {label} ==");
        let mut eval = marketsim(binary);
        eval.arg("eval")
            .args(runs.iter())
            .arg("--out")
            .arg(work.join(format!("eval-{label}.json")));
        run(eval)?;
    }
    println!();
    for (name, seconds) in wall {
        println!("{name}: {seconds:.0} s wall with the model");
    }
    if options.keep.is_some() {
        println!("runs and eval-*.json in {}", work.display());
    }
    Ok(())
}
