# adoport's prelude: definitions that make jaq answer as jq does for what users write in
# port-app-configs. Each one is measured against the `jq` binary by
# tests/jq_differential.rs; remaining, deliberate differences are listed in the README.
# Loaded after jaq's own definitions: a definition here replaces jaq's of the same name
# (the jaq version is kept under a `_jaq_` name where ours needs it).

# `env` is `$ENV`: the process environment without its secrets when
# OCEAN__ALLOW_ENVIRONMENT_VARIABLES_JQ_ACCESS is true (Ocean's default), else an empty object
# (see `Prelude` in jq.rs and adoport_shared::config::JqEnvironment).
def env: $ENV;

def _jaq_ltrimstr($s): ltrimstr($s);
def _jaq_rtrimstr($s): rtrimstr($s);
def _jaq_indices($i): indices($i);
def _jaq_contains($b): contains($b);

# jq leaves the input alone when it or the argument is not a string; jaq fails.
def ltrimstr($s): if type == "string" and ($s | type) == "string" then _jaq_ltrimstr($s) end;
def rtrimstr($s): if type == "string" and ($s | type) == "string" then _jaq_rtrimstr($s) end;

# jq: `null | indices(x)` is null.
def indices($i): if . == null then null else _jaq_indices($i) end;
def index($i): indices($i) | .[0];
def rindex($i): indices($i) | .[-1:][0];

# jq refuses to compare containment of values of different kinds (true and false are kinds).
def contains($b):
  if type == ($b | type) and (type != "boolean" or . == $b) then _jaq_contains($b)
  else error("\(type) (\(tojson)) and \($b | type) (\($b | tojson)) cannot have their containment checked")
  end;
def inside(xs): . as $x | xs | contains($x);

# jq parses the whole string as one number; jaq's `fromjson` stops after the first value.
def tonumber:
  if type == "number" then .
  elif type == "string" then
    (try [fromjson] catch null) as $n
    | if ($n | length) == 1 and ($n[0] | type) == "number" then $n[0]
      else error("Cannot parse '\(.)' as JSON") end
  else error("\(type) (\(tojson)) cannot be parsed as a number")
  end;

# jq prints an integral number without a fraction (`3`, not jaq's `3.0` for a float), also
# inside arrays and objects.
def _jaq_tojson: tojson;
def _integral: if type == "number" and (isinfinite | not) and . == floor and . < 1e17 and . > -1e17 then floor end;
def tojson: if type == "number" then _integral elif type == "array" or type == "object" then walk(_integral) end | _jaq_tojson;
def @json: tojson;

# jq prints integral numbers without a fraction (`3`, not `3.0`) and infinities as the
# largest double.
def tostring:
  if type == "string" then .
  elif type == "number" then
    if isinfinite then (if . > 0 then "1.7976931348623157e+308" else "-1.7976931348623157e+308" end)
    elif isnan then "null"
    elif . == floor and . < 1e17 and . > -1e17 then floor | tojson
    else tojson end
  else tojson
  end;

# Missing in jaq.
def leaf_paths: paths(scalars);
def IN(s): any(s == .; .);
def IN(src; s): any(src == s; .);
def tostream: path(def r: (.[]? | r), .; r) as $p | getpath($p) | reduce path(.[]?) as $q ([$p, .]; [$p + $q]);
def @csv:
  if type != "array" then error("\(type) (\(tojson)) cannot be csv-formatted, only an array can be") end
  | map(
      if type == "number" then tostring
      elif type == "string" then "\"" + gsub("\""; "\"\"") + "\""
      elif type == "boolean" then tostring
      elif type == "null" then ""
      else error("\(type) (\(tojson)) is not valid in a csv row") end)
  | join(",");
def @tsv:
  if type != "array" then error("\(type) (\(tojson)) cannot be tsv-formatted, only an array can be") end
  | map(
      if type == "string" then gsub("\\\\"; "\\\\") | gsub("\t"; "\\t") | gsub("\n"; "\\n") | gsub("\r"; "\\r")
      elif type == "number" or type == "boolean" then tostring
      elif type == "null" then ""
      else error("\(type) (\(tojson)) is not valid in a tsv row") end)
  | join("\t");
