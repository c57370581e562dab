//! Which analyst writes a run's recommendations: the offline rules, or an OpenAI-compatible
//! model configured from the environment (falling back to the rules without a key).

use crate::analyst::llm::{LlmAnalyst, LlmError, LlmSettings};
use crate::analyst::rules::RulesAnalyst;
use crate::analyst::Analyst;

/// `--analyst rules | llm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnalystChoice {
    Rules,
    Llm,
}

/// The analyst for `choice`, and a note for the user when the choice could not be honoured.
pub fn make_analyst(choice: AnalystChoice) -> Result<(Box<dyn Analyst>, Option<String>), LlmError> {
    match choice {
        AnalystChoice::Rules => Ok((Box::new(RulesAnalyst), None)),
        AnalystChoice::Llm => Ok(match LlmSettings::try_from_env()? {
            None => (
                Box::new(RulesAnalyst),
                Some("OPENAI_API_KEY is not set; using the rules analyst".to_string()),
            ),
            Some(settings) => (Box::new(LlmAnalyst::new(settings)?), None),
        }),
    }
}
