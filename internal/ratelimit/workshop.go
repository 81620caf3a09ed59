package ratelimit

// WorkshopDomain is the domain of the workshop's rule: the ingress's
// RateLimitService in the Faces resilience workshop sets domain emissary.
const WorkshopDomain = "emissary"

// workshopConfig limits the descriptor (mykey, myvalue) to 8 requests per
// second. The workshop's face Mapping labels its group with the specifier
// {x-emissary-test-allow: null, generic_key: {key: mykey, value: myvalue}},
// which Emissary (and weft's ingress) turn into that one-entry descriptor,
// so every request to face counts against one shared 8/s budget.
const workshopConfig = `# The Faces resilience workshop's rate limit (weft built-in).
domain: emissary
descriptors:
  - key: mykey
    value: myvalue
    rate_limit:
      name: workshop-face
      unit: second
      requests_per_unit: 8
`

// WorkshopConfig returns the workshop's rate limit configuration in
// envoyproxy/ratelimit's YAML format, for the supervisor and 'weft demo'
// (write it to a file for --config, or pass 'weft ratelimit --workshop').
func WorkshopConfig() []byte { return []byte(workshopConfig) }
