//! Build script: embeds the web assets in the binary — Apache ECharts, from the npm install
//! pinned by `web/package-lock.json` — so reports render, and pages will be served, from any
//! folder with no `web/` beside the binary and no network.
//!
//! The ECharts build is `web/node_modules/echarts/dist/echarts.min.js`, or the file named by
//! `MARKETSIM_ECHARTS` at build time. When `web/node_modules` is missing or holds another ECharts
//! than the lockfile pins, and npm is on PATH, the script runs `npm ci --prefix web` itself, so
//! `cargo build` and `cargo install --path . --locked` work from a fresh clone; when that cannot
//! be done, the build fails and says how to get the file. The file is copied into `OUT_DIR`
//! (`src/assets.rs` includes it from there) and its version, read from the package's
//! `package.json`, is passed to the crate as `MARKETSIM_ECHARTS_VERSION`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The ECharts build inside the npm package.
const ECHARTS_IN_PACKAGE: &str = "dist/echarts.min.js";
/// The npm command that installs the web dependencies exactly as locked.
const NPM_CI_ARGUMENTS: [&str; 6] = [
    "ci",
    "--prefix",
    "web",
    "--no-audit",
    "--no-fund",
    "--loglevel=error",
];
/// What to tell someone whose build cannot get ECharts.
const HOW_TO_GET_ECHARTS: &str = "\
marketsim embeds Apache ECharts (for its HTML reports) from the npm package that
web/package-lock.json pins. To get it, either
  - install Node.js and npm (on Debian: `apt-get install nodejs npm`) and build again, or run
    `npm ci --prefix web` in the project folder yourself; or
  - build with MARKETSIM_ECHARTS=/path/to/echarts.min.js.";

fn main() {
    if let Err(message) = embed_web_sources() {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
    if let Err(message) = embed_echarts() {
        // Cargo prints a failing build script's standard error under the crate's name.
        eprintln!("error: {message}\n\n{HOW_TO_GET_ECHARTS}");
        std::process::exit(1);
    }
}

fn embed_echarts() -> Result<(), String> {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let out_dir = PathBuf::from(
        std::env::var_os("OUT_DIR").ok_or("cargo did not set OUT_DIR for the build script")?,
    );
    let web_dir = manifest_dir.join("web");
    let lockfile = web_dir.join("package-lock.json");
    println!("cargo:rerun-if-env-changed=MARKETSIM_ECHARTS");
    println!("cargo:rerun-if-changed={}", lockfile.display());

    let (echarts_file, version) = match std::env::var_os("MARKETSIM_ECHARTS") {
        Some(explicit) if !explicit.is_empty() => {
            // Relative to the project folder, where cargo runs build scripts.
            let file = manifest_dir.join(explicit);
            if !file.is_file() {
                return Err(format!(
                    "MARKETSIM_ECHARTS names {}, which is not a file",
                    file.display()
                ));
            }
            // An ECharts build inside its npm package (`…/echarts/dist/echarts.min.js`) has
            // its version beside it; any other file is embedded as it is.
            let version = file
                .parent()
                .and_then(Path::parent)
                .and_then(|package| read_package_version(&package.join("package.json")))
                .unwrap_or_else(|| "unknown".to_string());
            (file, version)
        }
        _ => {
            let package_dir = web_dir.join("node_modules/echarts");
            let version = installed_locked_echarts(&manifest_dir, &lockfile, &package_dir)?;
            println!(
                "cargo:rerun-if-changed={}",
                package_dir.join("package.json").display()
            );
            (package_dir.join(ECHARTS_IN_PACKAGE), version)
        }
    };
    println!("cargo:rerun-if-changed={}", echarts_file.display());

    // Read as text: the crate includes it with `include_str!`, so it is checked here, where
    // the error can name the file.
    let script = std::fs::read_to_string(&echarts_file)
        .map_err(|e| format!("cannot read {} as UTF-8 text: {e}", echarts_file.display()))?;
    let embedded = out_dir.join("echarts.min.js");
    std::fs::write(&embedded, script)
        .map_err(|e| format!("cannot write {}: {e}", embedded.display()))?;
    println!("cargo:rustc-env=MARKETSIM_ECHARTS_VERSION={version}");
    Ok(())
}

/// The front end's own files (`web/src/`: pages, scripts, styles) as a Rust table in
/// `OUT_DIR/web_sources.rs`, one `include_str!` per file, sorted by name so the table — and the
/// binary — do not depend on the directory's order. Files are served under `/assets/` by the
/// live server and inlined by the reports.
fn embed_web_sources() -> Result<(), String> {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let out_dir = PathBuf::from(
        std::env::var_os("OUT_DIR").ok_or("cargo did not set OUT_DIR for the build script")?,
    );
    let source_dir = manifest_dir.join("web/src");
    println!("cargo:rerun-if-changed={}", source_dir.display());
    let entries = std::fs::read_dir(&source_dir).map_err(|e| {
        format!(
            "cannot read the front end's folder {}: {e}",
            source_dir.display()
        )
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", source_dir.display()))?;
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let content_type = match path.extension().and_then(|e| e.to_str()) {
            Some("js" | "mjs") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("html") => "text/html; charset=utf-8",
            Some("svg") => "image/svg+xml",
            Some("json") => "application/json",
            _ => continue,
        };
        // Checked here, where the error can name the file; the crate includes it as text.
        std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {} as UTF-8 text: {e}", path.display()))?;
        println!("cargo:rerun-if-changed={}", path.display());
        files.push((name, content_type, path));
    }
    files.sort();
    let mut table = String::from("&[\n");
    for (name, content_type, path) in &files {
        table.push_str(&format!(
            "    WebAsset {{ name: {name:?}, content_type: {content_type:?}, text: include_str!({:?}) }},\n",
            path.display().to_string()
        ));
    }
    table.push_str("]\n");
    let generated = out_dir.join("web_sources.rs");
    std::fs::write(&generated, table)
        .map_err(|e| format!("cannot write {}: {e}", generated.display()))
}

/// Makes sure `web/node_modules` holds the ECharts version that `web/package-lock.json` pins,
/// running `npm ci` when it does not, and returns that version.
fn installed_locked_echarts(
    manifest_dir: &Path,
    lockfile: &Path,
    package_dir: &Path,
) -> Result<String, String> {
    let lock_text = std::fs::read_to_string(lockfile)
        .map_err(|e| format!("cannot read {}: {e}", lockfile.display()))?;
    let locked = json_string_at(&lock_text, &["packages", "node_modules/echarts", "version"])
        .ok_or_else(|| format!("{} pins no version of echarts", lockfile.display()))?;
    let is_installed = |package_dir: &Path| {
        package_dir.join(ECHARTS_IN_PACKAGE).is_file()
            && read_package_version(&package_dir.join("package.json")).as_deref()
                == Some(locked.as_str())
    };
    if is_installed(package_dir) {
        return Ok(locked);
    }

    let mut npm = Command::new("npm");
    npm.current_dir(manifest_dir).args(NPM_CI_ARGUMENTS);
    let command_line = format!("npm {}", NPM_CI_ARGUMENTS.join(" "));
    let output = npm.output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "ECharts {locked} is not installed in web/node_modules, and npm, which would \
             install it, is not on PATH"
        ),
        _ => format!(
            "ECharts {locked} is not installed in web/node_modules, and `{command_line}` \
             could not be started: {e}"
        ),
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        println!(
            "cargo:warning=`{command_line}` failed ({}); see the error below",
            output.status
        );
        return Err(format!(
            "ECharts {locked} is not installed in web/node_modules, and `{command_line}` \
             failed ({}):\n{}",
            output.status,
            tail.join("\n")
        ));
    }
    if !is_installed(package_dir) {
        return Err(format!(
            "`{command_line}` succeeded but {} is still not ECharts {locked}",
            package_dir.join(ECHARTS_IN_PACKAGE).display()
        ));
    }
    Ok(locked)
}

/// The `version` of an npm `package.json`, if it can be read.
fn read_package_version(package_json: &Path) -> Option<String> {
    let text = std::fs::read_to_string(package_json).ok()?;
    json_string_at(&text, &["version"])
}

/// The string at `path` (object keys from the top) in a JSON document. Just enough JSON for
/// npm's `package.json` and `package-lock.json`, so the build needs no parser crate.
fn json_string_at(text: &str, path: &[&str]) -> Option<String> {
    let mut cursor = JsonCursor {
        bytes: text.as_bytes(),
        position: 0,
    };
    cursor.find(path)
}

struct JsonCursor<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl JsonCursor<'_> {
    /// The next byte that is not whitespace, left unread.
    fn peek(&mut self) -> Option<u8> {
        while self
            .bytes
            .get(self.position)
            .is_some_and(u8::is_ascii_whitespace)
        {
            self.position += 1;
        }
        self.bytes.get(self.position).copied()
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        if self.peek()? != byte {
            return None;
        }
        self.position += 1;
        Some(())
    }

    /// A string; escapes other than `\"` and `\\` are kept as written (names and versions
    /// have none).
    fn string(&mut self) -> Option<String> {
        self.expect(b'"')?;
        let mut value = Vec::new();
        loop {
            let byte = *self.bytes.get(self.position)?;
            self.position += 1;
            match byte {
                b'"' => return String::from_utf8(value).ok(),
                b'\\' => {
                    let escaped = *self.bytes.get(self.position)?;
                    self.position += 1;
                    if escaped != b'"' && escaped != b'\\' {
                        value.push(b'\\');
                    }
                    value.push(escaped);
                }
                _ => value.push(byte),
            }
        }
    }

    fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            open @ (b'{' | b'[') => {
                self.position += 1;
                let close = if open == b'{' { b'}' } else { b']' };
                loop {
                    if self.peek()? == close {
                        self.position += 1;
                        return Some(());
                    }
                    if open == b'{' {
                        self.string()?;
                        self.expect(b':')?;
                    }
                    self.skip_value()?;
                    if self.peek()? == b',' {
                        self.position += 1;
                    }
                }
            }
            _ => {
                // A number, true, false or null.
                let start = self.position;
                while self
                    .bytes
                    .get(self.position)
                    .is_some_and(|b| !b",}] \t\r\n".contains(b))
                {
                    self.position += 1;
                }
                (self.position > start).then_some(())
            }
        }
    }

    fn find(&mut self, path: &[&str]) -> Option<String> {
        let Some((key, rest)) = path.split_first() else {
            return self.string();
        };
        self.expect(b'{')?;
        loop {
            if self.peek()? == b'}' {
                return None;
            }
            let name = self.string()?;
            self.expect(b':')?;
            if name == *key {
                return self.find(rest);
            }
            self.skip_value()?;
            if self.peek()? == b',' {
                self.position += 1;
            }
        }
    }
}
