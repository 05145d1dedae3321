--[[
  Test driver run inside the real darktable (`--luacmd 'require "raw2rgb_test_driver"'`).

  Environment:
    RAW2RGB_TEST_RESULT   where to write the JSON result (always written, also on errors)
    RAW2RGB_TEST_PROGRESS where to append one line per step (to see where a hung run stopped)
    RAW2RGB_TEST_INPUTS   files to import, one per line
    RAW2RGB_TEST_MODE     "export" (press the export button) or "action" (fire the raw2rgb action)
    RAW2RGB_TEST_STYLE    a darktable style (.dtstyle) to import and apply to ...
    RAW2RGB_TEST_STYLED   ... these inputs (one per line), as a user applies a style in the
                          lighttable: it adds the style's modules to each image's history
    RAW2RGB_TEST_TIMEOUT  seconds to wait for raw2rgb to finish (default 90)

  It waits for the lighttable, imports the inputs, applies the style (and waits for its history),
  selects the inputs and waits until darktable's selection holds exactly them, starts raw2rgb,
  waits until the raw2rgb script reports a finished run, dumps the library, and quits darktable
  on every path. The test switches the lighttable's filters off: with darktable 5.0.1's defaults
  an image darktable has processed (its thumbnail made, a style applied) leaves the collection at
  the next re-query, and the selection with it.
]]

local dt = require "darktable"

local result_path = os.getenv("RAW2RGB_TEST_RESULT")
local mode = os.getenv("RAW2RGB_TEST_MODE") or "export"
local timeout_ms = (tonumber(os.getenv("RAW2RGB_TEST_TIMEOUT")) or 90) * 1000

local function json_string(s)
  return '"' .. tostring(s):gsub('[%c"\\]', function(c)
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function json(value)
  local kind = type(value)
  if kind == "table" then
    if #value > 0 or next(value) == nil then
      local parts = {}
      for _, v in ipairs(value) do parts[#parts + 1] = json(v) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    local parts = {}
    for k, v in pairs(value) do parts[#parts + 1] = json_string(k) .. ":" .. json(v) end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif kind == "number" or kind == "boolean" then
    return tostring(value)
  elseif value == nil then
    return "null"
  end
  return json_string(value)
end

local function write_result(result)
  local f = assert(io.open(result_path, "w"))
  f:write(json(result))
  f:close()
end

local function wait_for(what, predicate, limit_ms)
  local waited = 0
  while not predicate() do
    if waited >= limit_ms then error("timed out waiting for " .. what) end
    dt.control.sleep(100)
    waited = waited + 100
  end
end

local function library()
  local images = {}
  for _, image in ipairs(dt.database) do
    local tags = {}
    for _, tag in ipairs(dt.tags.get_tags(image)) do
      if type(tag) ~= "number" then tags[#tags + 1] = tag.name end
    end
    local leader = image.group_leader
    images[#images + 1] = {
      id = image.id,
      path = image.path .. "/" .. image.filename,
      group_leader = leader.path .. "/" .. leader.filename,
      tags = tags,
    }
  end
  return images
end

local function step(what)
  local f = io.open(os.getenv("RAW2RGB_TEST_PROGRESS") or "/dev/null", "a")
  if f then
    f:write(os.date("%H:%M:%S ") .. what .. "\n")
    f:close()
  end
end

--- Apply the style in the file RAW2RGB_TEST_STYLE to the images of RAW2RGB_TEST_STYLED.
local function apply_test_style()
  local file = os.getenv("RAW2RGB_TEST_STYLE") or ""
  if file == "" then return end
  local name = file:match("([^/]*)%.dtstyle$")
  dt.styles.import(file)
  local style = nil
  for _, candidate in ipairs(dt.styles) do
    if candidate.name == name then style = candidate end
  end
  if not style then error("darktable did not import the style " .. file) end
  local styled = {}
  for path in (os.getenv("RAW2RGB_TEST_STYLED") or ""):gmatch("[^\n]+") do
    local image = dt.database.import(path)
    image:apply_style(style)
    styled[#styled + 1] = image
  end
  -- the history the style wrote is what raw2rgb reads (from darktable's library, at the export)
  wait_for("the style's history on the styled image(s)", function()
    for _, image in ipairs(styled) do
      if not image.is_altered then return false end
    end
    return true
  end, 30000)
  step("applied the style " .. name .. " to " .. #styled .. " image(s)")
end

--- The ids of `list` (images), sorted, as one string: "3,7".
local function id_list(list)
  local ids = {}
  for _, image in ipairs(list or {}) do ids[#ids + 1] = image.id end
  table.sort(ids)
  return table.concat(ids, ",")
end

--- Select `images` and wait until darktable acts on exactly them: an export (like the action,
--- dt.gui.action_images) takes the selected images of darktable's collection, and each re-query
--- of the collection (every dt.database.import makes one) drops from it, and from the selection,
--- the images its filters hide. Selected again while darktable's selection or the images it
--- acts on differ from `images`; an error names what darktable holds.
local function select_and_wait(images)
  local wanted = id_list(images)
  local selected, acted_on = "", ""
  dt.gui.selection(images)
  local ok = pcall(wait_for, "darktable to select", function()
    selected, acted_on = id_list(dt.gui.selection()), id_list(dt.gui.action_images)
    if selected == wanted and acted_on == wanted then return true end
    dt.gui.selection(images)
    return false
  end, 30000)
  if not ok then
    error("darktable did not select the images " .. wanted .. " (selected: " .. selected
      .. ", acted on: " .. acted_on .. ", the collection counts " .. #dt.collection .. ")")
  end
end

local function drive()
  step("started")
  local plugin = require "raw2rgb"
  wait_for("the lighttable", function()
    local view = dt.gui.current_view()
    return view and view.id == "lighttable"
  end, 60000)

  step("lighttable is up")
  local images = {}
  for path in (os.getenv("RAW2RGB_TEST_INPUTS") or ""):gmatch("[^\n]+") do
    local image = dt.database.import(path)
    if not image then error("darktable did not import " .. path) end
    -- a tag on the original, to see it copied onto the result
    dt.tags.attach(dt.tags.create("raw2rgb-test|original"), image)
    images[#images + 1] = image
  end
  apply_test_style()
  select_and_wait(images)
  step("imported and selected " .. #images .. " image(s)")

  local runs_before = #plugin.runs
  if mode == "export" then
    dt.gui.action("lib/export/export", 0, "", "", 1.0)
  elseif mode == "action" then
    dt.gui.action("lua/raw2rgb: convert selected", 0, "", "", 1.0)
  else
    error("unknown RAW2RGB_TEST_MODE " .. mode)
  end
  step("started raw2rgb by " .. mode)
  wait_for("raw2rgb to finish", function() return #plugin.runs > runs_before end, timeout_ms)
  return { run = plugin.runs[#plugin.runs], images = library() }
end

local ok, outcome = pcall(drive)
if ok then
  write_result(outcome)
else
  write_result({ error = tostring(outcome) })
end
step("quitting")
dt.gui.action("global/quit", 0, "", "", 1.0)
