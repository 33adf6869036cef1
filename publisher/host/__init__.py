"""`lcm host`: a GitHub-compatible release host built on the standard library.

Modules by concern:

  store.py     repos, releases and assets on disk (metadata JSON written atomically)
  names.py     what GitHub accepts as repo, tag and asset names (and how it rewrites them)
  render.py    the JSON shapes GitHub answers with, URLs pointing at this host
  api.py       the REST subset under /api/v3 and uploads under /api/uploads
  graphql.py   the GraphQL queries the GitHub CLI sends (POST /api/graphql)
  browser.py   the browser URLs devices use, redirects and signed asset URLs
  urlsign.py   expiring signed asset URLs (what GitHub's CDN hands out)
  ratelimit.py X-RateLimit-* accounting for unauthenticated API requests
  mirror.py    `--mirror`: a verified pull-through copy of another host's releases
  faults.py    request log and injected faults for tests (in-process only)
  handler.py   the HTTP/1.1 request handler: parsing, dispatch, writing
  server.py    wiring, TLS and `start_host`
"""
