//! The four kinds of YAML file marketsim reads — run script, catalog, event library, scenario
//! definition — told apart by their top-level keys, never by the file name: a file is taken for
//! the kind whose keys it uses most ([`InputKind::keys`]), ties going to the earlier kind in
//! [`InputKind::ALL`].

/// A kind of YAML file marketsim reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// `marketsim run SCRIPT`: name, seed, start, duration, timeline, … (`script.rs`).
    RunScript,
    /// The marketplace: subjects, seasonality, flows and streams (`market::catalog`).
    Catalog,
    /// External-event templates under `events` (`scenarios/events.yaml`).
    EventLibrary,
    /// One scenario of the library (`scenarios/library/<id>.yaml`).
    ScenarioDefinition,
}

impl InputKind {
    /// Every kind, in the order that breaks ties.
    pub const ALL: [InputKind; 4] = [
        InputKind::RunScript,
        InputKind::Catalog,
        InputKind::EventLibrary,
        InputKind::ScenarioDefinition,
    ];

    /// The top-level keys each kind accepts (its loader refuses any other).
    pub const fn keys(self) -> &'static [&'static str] {
        match self {
            InputKind::RunScript => &[
                "name",
                "description",
                "seed",
                "start",
                "duration",
                "bucket",
                "catalog",
                "library",
                "now",
                "policy",
                "background_events",
                "scenarios",
                "timeline",
            ],
            InputKind::Catalog => &["version", "subjects", "seasonality", "flows", "streams"],
            InputKind::EventLibrary => &["events"],
            InputKind::ScenarioDefinition => &[
                "id",
                "name",
                "description",
                "duration",
                "settlement",
                "modifiers",
                "events",
                "cascade",
            ],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            InputKind::RunScript => "run script",
            InputKind::Catalog => "catalog",
            InputKind::EventLibrary => "event library",
            InputKind::ScenarioDefinition => "scenario definition",
        }
    }

    /// "a run script", "an event library", …
    pub fn with_article(self) -> String {
        let article = if self == InputKind::EventLibrary {
            "an"
        } else {
            "a"
        };
        format!("{article} {}", self.name())
    }

    /// The kind whose keys the document's top-level keys match most, or `None` when the text
    /// is not a YAML mapping or uses no known key.
    pub fn detect(text: &str) -> Option<InputKind> {
        let document: serde_yaml::Value = serde_yaml::from_str(text).ok()?;
        let keys = top_level_keys(&document)?;
        let score = |kind: InputKind| keys.iter().filter(|k| kind.keys().contains(k)).count();
        // `max_by_key` keeps the last of equals; reversing keeps the first kind on a tie.
        InputKind::ALL
            .into_iter()
            .rev()
            .max_by_key(|kind| score(*kind))
            .filter(|kind| score(*kind) > 0)
    }
}

pub(crate) fn top_level_keys(document: &serde_yaml::Value) -> Option<Vec<&str>> {
    Some(
        document
            .as_mapping()?
            .keys()
            .filter_map(serde_yaml::Value::as_str)
            .collect(),
    )
}
