"""The browser pages: request explorer and key dashboard (static HTML, CSS and vanilla JS)."""
