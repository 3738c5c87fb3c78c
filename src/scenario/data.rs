//! The test data set that request bodies are built from.
//!
//! A data file is a JSON object whose values are non-empty arrays of strings
//! (`{"genre": ["仙侠", …], "premise": […]}`). Each workflow iteration of a
//! virtual user draws one element of every array with that user's seeded
//! generator, so a run is reproducible for a given seed.

use std::collections::BTreeMap;
use std::path::Path;

use rand::Rng;

use crate::error::UserError;

/// The bundled Chinese novel data set.
pub const BUNDLED_NOVEL: &str = include_str!("../../data/novel.json");

/// Named lists of strings to sample request content from.
#[derive(Clone)]
pub struct DataSet {
    fields: BTreeMap<String, Vec<String>>,
    /// Prose used to fill prompts of a requested length.
    filler: Vec<char>,
}

impl std::fmt::Debug for DataSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.fields.iter().map(|(k, v)| (k, v.len())))
            .finish()
    }
}

impl DataSet {
    /// Parse a data set; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, UserError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            UserError::invalid(
                "data file",
                origin,
                Some(format!("line {}, column {}", e.line(), e.column())),
                e.to_string(),
            )
        })?;
        let obj = value.as_object().ok_or_else(|| {
            UserError::invalid(
                "data file",
                origin,
                None,
                "expected a JSON object of string arrays",
            )
        })?;
        let mut fields = BTreeMap::new();
        for (key, v) in obj {
            let arr = v.as_array().filter(|a| !a.is_empty()).ok_or_else(|| {
                UserError::invalid(
                    "data file",
                    origin,
                    Some(format!("key `{key}`")),
                    "expected a non-empty array of strings",
                )
            })?;
            let mut items = Vec::with_capacity(arr.len());
            for (i, item) in arr.iter().enumerate() {
                let s = item.as_str().ok_or_else(|| {
                    UserError::invalid(
                        "data file",
                        origin,
                        Some(format!("`{key}[{i}]`")),
                        "expected a string",
                    )
                })?;
                items.push(s.to_owned());
            }
            fields.insert(key.clone(), items);
        }
        if fields.is_empty() {
            return Err(UserError::invalid(
                "data file",
                origin,
                None,
                "the object has no fields",
            ));
        }
        let source = fields
            .get("passage")
            .or_else(|| {
                fields
                    .values()
                    .max_by_key(|v| v.iter().map(String::len).sum::<usize>())
            })
            .cloned()
            .unwrap_or_default();
        let filler: Vec<char> = source.concat().chars().collect();
        Ok(Self { fields, filler })
    }

    /// The bundled novel data set.
    pub fn bundled() -> Self {
        #[allow(clippy::expect_used, reason = "the bundled file is checked by a test")]
        Self::parse(BUNDLED_NOVEL, Path::new("<bundled data/novel.json>"))
            .expect("bundled data set is valid")
    }

    /// One draw: an element of every field.
    pub fn sample(&self, rng: &mut impl Rng) -> BTreeMap<String, String> {
        self.fields
            .iter()
            .map(|(k, v)| (k.clone(), v[rng.random_range(0..v.len())].clone()))
            .collect()
    }

    /// The first element of every field, for checking templates at load time.
    pub fn first(&self) -> BTreeMap<String, String> {
        self.fields
            .iter()
            .map(|(k, v)| (k.clone(), v[0].clone()))
            .collect()
    }

    /// `n` characters of prose, starting at `offset` and wrapping around.
    pub fn filler(&self, n: usize, offset: usize) -> String {
        if self.filler.is_empty() {
            return "字".repeat(n);
        }
        let len = self.filler.len();
        (0..n).map(|i| self.filler[(offset + i) % len]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn bundled_data_parses_and_samples_reproducibly() {
        let d = DataSet::bundled();
        let a = d.sample(&mut rand::rngs::SmallRng::seed_from_u64(7));
        let b = d.sample(&mut rand::rngs::SmallRng::seed_from_u64(7));
        assert_eq!(a, b);
        assert!(a.contains_key("premise"));
        assert_eq!(d.filler(10, 3).chars().count(), 10);
    }

    #[test]
    fn bad_data_names_the_key() {
        let err = DataSet::parse(r#"{"genre": [1]}"#, Path::new("d.json")).expect_err("invalid");
        assert!(err.to_string().contains("`genre[0]`"), "{err}");
        let err = DataSet::parse(r#"{"genre": []}"#, Path::new("d.json")).expect_err("invalid");
        assert!(err.to_string().contains("key `genre`"), "{err}");
    }
}
