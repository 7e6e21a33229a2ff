"""`lnn serve`: a web page on 127.0.0.1 with a deployed stack's runs, their cost curves, final metrics and a
predict form. Flask serves it; the page's script and style are shipped in this package (no CDN).

The curves are drawn by uPlot (github.com/leeoniya/uPlot, MIT): about 50 KB minified with no dependencies, made for
time series of thousands of points (a 1,000-epoch curve redraws in a few milliseconds on a canvas), with a
logarithmic scale built in; it is maintained and released regularly. Chart.js would do too, at four times the size.
It is installed by name from npm (package.json pins it, package-lock.json its checksum) and its minified script,
style and LICENSE are copied unchanged into static/vendor/; tests/unit/test_web_vendor.py checks that the copies
are npm's files of the pinned version. To upgrade: `npm install --save-exact uplot@X`, then copy
node_modules/uplot/dist/uPlot.iife.min.js, dist/uPlot.min.css and LICENSE (as uPlot.LICENSE) into static/vendor/.
"""

DEFAULT_PORT = 8765  # `lnn serve --port`; here, not in app.py, so that `lnn --help` does not import Flask
