//! The catalog shipped with Berth (`catalog/predefined.json`), registered idempotently
//! at every start.

use berth_domain::catalog::CatalogDefinition;

/// The shipped catalog, built into the binary.
const PREDEFINED_JSON: &str = include_str!("../../catalog/predefined.json");

/// Why the shipped catalog cannot be used (a build defect, caught by the unit test).
#[derive(Debug, thiserror::Error)]
pub enum PredefinedCatalogError {
    /// The file is not a list of catalog definitions.
    #[error("the shipped catalog does not parse: {0}")]
    Parse(#[from] serde_json::Error),
    /// An entry breaks a catalog rule.
    #[error("the shipped catalog entry `{name}` is invalid: {errors}")]
    Invalid {
        /// The entry.
        name: String,
        /// What is wrong, field by field.
        errors: String,
    },
}

/// Parses and validates the shipped catalog.
pub fn definitions() -> Result<Vec<CatalogDefinition>, PredefinedCatalogError> {
    let definitions: Vec<CatalogDefinition> = serde_json::from_str(PREDEFINED_JSON)?;
    for d in &definitions {
        if let Err(errors) = d.validate() {
            return Err(PredefinedCatalogError::Invalid {
                name: d.name.clone(),
                errors: errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            });
        }
    }
    Ok(definitions)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use berth_domain::catalog::RuntimeSpec;

    use super::*;

    #[test]
    fn the_shipped_catalog_parses_and_every_entry_validates() {
        let definitions = definitions().unwrap_or_else(|e| panic!("{e}"));
        assert!((6..=8).contains(&definitions.len()));
        let names: BTreeSet<_> = definitions.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names.len(), definitions.len(), "names must be unique");
        for d in &definitions {
            assert!(!d.description.is_empty(), "{} needs a description", d.name);
            assert!(
                matches!(d.runtime, RuntimeSpec::Docker { .. }),
                "{} should run from its published image",
                d.name
            );
            for key in d.config_schema.iter().filter(|k| k.secret) {
                assert!(
                    key.default.is_none(),
                    "{}: secret {} has a default",
                    d.name,
                    key.key
                );
            }
        }
        let github = definitions.iter().find(|d| d.name == "github");
        let token = github.and_then(|d| d.key("GITHUB_PERSONAL_ACCESS_TOKEN"));
        assert!(token.is_some_and(|k| k.secret && k.required));
    }
}
