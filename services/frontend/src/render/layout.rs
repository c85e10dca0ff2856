//! The page shell every HTML page shares: head, header with its navigation,
//! footer; and the error page drawn in it.

use maud::{html, Markup, DOCTYPE};

use crate::assets;
use crate::range::Range;
use crate::view::PageContext;

/// The one layout every HTML page uses.
pub fn layout(
    title: &str,
    refresh_secs: Option<u64>,
    header_extra: Markup,
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                link rel="stylesheet" href=(assets::url("style.css"));
                link rel="icon" href=(assets::url("favicon.svg")) type="image/svg+xml";
                @if let Some(seconds) = refresh_secs {
                    // Without JavaScript the page reloads itself; with it,
                    // panel.js swaps the content in place instead.
                    noscript { meta http-equiv="refresh" content=(seconds); }
                    script src=(assets::url("panel.js")) defer {}
                }
            }
            body {
                header.topbar {
                    div.brand {
                        a href="/" { span.logo aria-hidden="true" {} "Telemetría" }
                        span.subtitle { "weather readings by city" }
                    }
                    (header_extra)
                }
                (body)
                footer.footer {
                    "JSON: " a href="/api/cities" { "/api/cities" } " · "
                    a href="/api/readings" { "/api/readings" } " · CSV: "
                    a href="/api/readings.csv" { "/api/readings.csv" }
                }
            }
        }
    }
}

/// The header's city selector: which city's live weather the page shows.
pub fn city_selector(ctx: &PageContext) -> Markup {
    html! {
        form.selector method="get" action="/" {
            label for="city-select" { "Live weather for" }
            select #city-select name="city" {
                @for city in &ctx.settings.cities {
                    option value=(city.name) selected[city.name == ctx.selected] { (city.name) }
                }
            }
            // The form sends only its fields: the chart range goes along.
            @if ctx.range != Range::default() {
                input type="hidden" name="range" value=(ctx.range.param());
            }
            button.no-js type="submit" { "Show" }
        }
        span #refresh-status.refresh-status { "updates every " (ctx.settings.refresh_secs) " s" }
    }
}

/// An error page in the site's layout (unknown page, bad parameter).
pub fn error_page(title: &str, message: &str) -> Markup {
    layout(
        title,
        None,
        html! {},
        html! {
            main.panel {
                section.card.error-card {
                    h2 { (title) }
                    p { (message) }
                    p { a href="/" { "Back to the panel" } }
                }
            }
        },
    )
}
