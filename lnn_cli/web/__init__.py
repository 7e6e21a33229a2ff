"""`lnn serve`: a web page on 127.0.0.1 with a deployed stack's runs, their cost curves, final metrics and a
predict form. Flask serves it; the page's script and style are shipped in this package (no CDN)."""
