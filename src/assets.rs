//! Web assets embedded at build time: the Apache ECharts build from the npm install pinned by
//! `web/package-lock.json`, copied into `OUT_DIR` by `build.rs`, looked up by name.
//!
//! Reports inline these files, and the live server (not built yet) is to serve the same table
//! at `/assets/{name}`, so a binary copied anywhere needs no `web/` folder and no network.
//! Nothing here is read from disk at run time.

/// One embedded file.
#[derive(Debug)]
pub struct WebAsset {
    /// The file name, as served under `/assets/`.
    pub name: &'static str,
    /// Its HTTP `Content-Type`.
    pub content_type: &'static str,
    /// Its contents; web assets are text (`build.rs` checks the file is UTF-8).
    pub text: &'static str,
}

impl WebAsset {
    pub fn bytes(&self) -> &'static [u8] {
        self.text.as_bytes()
    }
}

/// The name of the ECharts build in the table.
pub const ECHARTS_NAME: &str = "echarts.min.js";

/// The embedded ECharts version, from its npm `package.json` at build time (`unknown` when the
/// build was given a file outside an npm package with `MARKETSIM_ECHARTS`).
pub const ECHARTS_VERSION: &str = env!("MARKETSIM_ECHARTS_VERSION");

const ECHARTS_SCRIPT: &str = include_str!(concat!(env!("OUT_DIR"), "/echarts.min.js"));

const WEB_ASSETS: &[WebAsset] = &[WebAsset {
    name: ECHARTS_NAME,
    content_type: "text/javascript; charset=utf-8",
    text: ECHARTS_SCRIPT,
}];

/// Every embedded file, in a fixed order.
pub fn web_assets() -> &'static [WebAsset] {
    WEB_ASSETS
}

/// The embedded file called `name`, if there is one.
pub fn web_asset(name: &str) -> Option<&'static WebAsset> {
    WEB_ASSETS.iter().find(|asset| asset.name == name)
}

/// The embedded ECharts build (`echarts.min.js`).
pub fn echarts_script() -> &'static str {
    ECHARTS_SCRIPT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_finds_echarts_by_name_and_nothing_else() {
        let echarts = web_asset(ECHARTS_NAME).map(WebAsset::bytes);
        assert_eq!(echarts, Some(echarts_script().as_bytes()));
        assert!(!echarts_script().is_empty());
        assert!(web_asset("echarts.js").is_none());
        assert!(web_asset("").is_none());
        assert_eq!(web_assets().len(), 1);
    }
}
