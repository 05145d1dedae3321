--[[
    raw2rgb.lua - neural RAW development with raw2rgb from inside darktable

    Copyright (c) the raw2rgb developers. MIT licence.

    USAGE
    * install: `raw2rgb install darktable` (copies this file to <configdir>/lua/raw2rgb.lua and
      adds `require "raw2rgb"` to <configdir>/luarc), then restart darktable
    * export: pick the target storage "raw2rgb (neural, 16-bit TIFF)" in the export module and
      press export. The ORIGINAL RAW of each image is converted by `raw2rgb convert` (darktable's
      edits are not applied: raw2rgb replaces the development), the result is imported and grouped
      with its original and gets the original's tags.
    * output: "finished TIFF" (a developed 16-bit TIFF) or "editable DNG" (`--format dng`: a linear
      DNG, demosaiced and denoised but still camera RGB with editable white balance, which darktable
      develops like a RAW); chosen in the storage's widget or the preferences, each with its own
      profile. A preference makes the DNG the leader of its group (off by default: the group keeps
      the leader it had).
    * without exporting: the button "raw2rgb: convert selected" in the selected images module,
      or the shortcut "lua/raw2rgb: convert selected" (preferences > shortcuts > lua)
    * settings: preferences > lua options (executable, profile, profile for DNGs, device, denoise
      strength, lens corrections, output, DNG group leader, output folder, existing files); the
      output, its profile, the device and the output folder also sit in the storage's own widget

    LENS CORRECTIONS
    A finished TIFF can have its lens's distortion, lateral chromatic aberration and vignetting
    corrected by raw2rgb from lensfun's database (`raw2rgb convert --lens auto|off`). The
    preference "raw2rgb: lens corrections" decides, per image:
    * auto (the default): `--lens auto`, except for an image whose own history in darktable has the
      lens correction module ("lens") switched on: that image gets `--lens off`, because its user
      corrects the lens in darktable (a history pasted onto the TIFF would correct it twice). The
      run's message says how many images that was, darktable's log names each.
    * off: `--lens off` for every image.
    The editable DNG never gets --lens: raw2rgb leaves a DNG's lens to darktable's lens module.
    The history is read from the XMP darktable writes of its library's state (beside the copy an
    export makes; for the action, a copy made the same way): the last item of each instance of
    "lens" before the history end says whether it is on. The image's own sidecar is not used: it
    may be switched off (write_sidecar_files) or older than the library.

    WHY THE "copy" FORMAT
    darktable calls a storage's store() only after it has processed each image through its own
    pipeline, which costs seconds per frame and would be thrown away. The one format that skips
    the pipeline is "copy" (it copies the original file), so this storage supports only it; the
    copy in darktable's temporary folder is deleted at once and raw2rgb reads the original.
    (Returning an empty list from the storage's initialize hook would skip even the copy, but
    darktable 4.2 frees the export list twice when that hook returns a table.)

    REQUIRES
    * darktable 4.2 or newer (Lua API 9), Linux or macOS (commands go through /bin/sh)
    * raw2rgb (its absolute path is recorded here by `raw2rgb install darktable`)
]]

local dt = require "darktable"

local MODULE = "raw2rgb"
local STORAGE_LABEL = "raw2rgb (neural, 16-bit TIFF)"
local ACTION_LABEL = "raw2rgb: convert selected"
local DEVICES = { "auto", "cpu", "cuda", "mps" }
local ON_EXISTING = { "overwrite", "skip" }
-- The output choices as the preference and the widget show them, and the `--format` of each.
-- "finished TIFF" passes no --format at all: the converter's default, the call it always was.
local FORMATS = { "finished TIFF", "editable DNG" }
local FORMAT_ARGUMENT = { ["finished TIFF"] = false, ["editable DNG"] = "dng" }
-- Each output has its own profile preference: a DNG needs a scene-linear profile, which raw2rgb
-- refuses for a TIFF, and a TIFF profile (tone curve, clipped highlights) is refused for a DNG.
local PROFILE_PREFERENCE = { ["finished TIFF"] = "profile", ["editable DNG"] = "dng_profile" }
-- `raw2rgb convert --lens` (raw2rgb's LENS_MODES; a test keeps them equal), the preference's choices
local LENS_MODES = { "auto", "off" }
local PROFILE_PLACEHOLDER = {
  ["finished TIFF"] = "raw2rgb's default profile", ["editable DNG"] = "raw2rgb's default DNG profile",
}
-- Files per converter process: one process loads the model once for all of them, and the
-- progress bar moves after each batch.
local BATCH_SIZE = 8
-- `raw2rgb convert --denoise` range and default (0 keeps all detail and grain, 2 denoises strongly),
-- written in as numbers by `raw2rgb install darktable` from raw2rgb's own definition.
local DENOISE_MIN, DENOISE_MAX, DENOISE_DEFAULT = "@RAW2RGB_DENOISE_MIN@", "@RAW2RGB_DENOISE_MAX@", "@RAW2RGB_DENOISE_DEFAULT@"

-- Filled in by `raw2rgb install darktable`; empty, or still shaped like @NAME@, means "not set".
local RECORDED_EXECUTABLE = "@RAW2RGB_EXECUTABLE@"
local RECORDED_PROFILE = "@RAW2RGB_PROFILE@"
local RECORDED_DEVICE = "@RAW2RGB_DEVICE@"
local RECORDED_DENOISE = "@RAW2RGB_DENOISE@"

local script_data = {}
script_data.metadata = {
  name = "raw2rgb",
  purpose = "neural RAW development with raw2rgb",
  author = "the raw2rgb developers",
  help = "https://github.com/raw2rgb/raw2rgb/tree/main/host_integrations",
}
script_data.destroy = nil
script_data.destroy_method = nil
script_data.restart = nil
script_data.show = nil
-- One summary per finished conversion run ({converted, failed, not_converted, messages, and for
-- an export the export_format darktable used}), for scripts that chain on raw2rgb and for the
-- tests that drive darktable.
script_data.runs = {}

-- The API major version is a number; comparing version strings would put "10" before "9".
if (tonumber(dt.configuration.api_version_major) or 0) < 9 then
  dt.print_error("raw2rgb: needs darktable 4.2 or newer (Lua API 9), this is API "
    .. tostring(dt.configuration.api_version_string))
  return script_data
end

local function recorded(value, fallback)
  if value == "" or value:match("^@RAW2RGB_[A-Z]+@$") then return fallback end
  return value
end

-- the strength `raw2rgb install darktable --denoise` recorded (a decimal number), else 1
local function recorded_denoise()
  local value = tonumber(recorded(RECORDED_DENOISE, ""))
  if value and value >= DENOISE_MIN and value <= DENOISE_MAX then return value end
  return DENOISE_DEFAULT
end

-- ------------------------------------------------------------------------------------------
-- helpers

--- Single-quote `s` for /bin/sh: nothing inside single quotes is special except the quote
--- itself, which is closed, escaped and reopened. Safe for every byte but NUL.
local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

--- `s` with every plain (non-pattern) occurrence of `old` replaced by `new`.
local function replace_plain(s, old, new)
  local out, start = {}, 1
  while true do
    local i, j = s:find(old, start, true)
    if not i then break end
    out[#out + 1] = s:sub(start, i - 1)
    out[#out + 1] = new
    start = j + 1
  end
  out[#out + 1] = s:sub(start)
  return table.concat(out)
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local text = f:read("a") or ""
  f:close()
  return text
end

--- A denoise strength as a plain decimal for the command line ("0.5", "1", "0.125"): clamped to
--- raw2rgb's range and rounded to 1/1000 (darktable keeps float preferences in single precision,
--- 0.1 reads back as 0.100000001), written with integer formats only, so no locale can turn the
--- decimal point into a comma.
local function denoise_argument(value)
  value = tonumber(value) or DENOISE_DEFAULT
  if value ~= value then value = DENOISE_DEFAULT end -- NaN
  value = math.min(DENOISE_MAX, math.max(DENOISE_MIN, value))
  local thousandths = math.floor(value * 1000 + 0.5)
  local text = string.format("%d.%03d", thousandths // 1000, thousandths % 1000)
  text = text:gsub("0+$", ""):gsub("%.$", "")
  return text
end

local function last_line(text)
  local last = nil
  for line in text:gmatch("[^\n]+") do
    if line:match("%S") then last = line end
  end
  return last
end

--- A strict little JSON reader for the converter's `--json` summary (Lua has none built in).
--- Returns the value, or nil and a message.
local function json_decode(text)
  local pos = 1
  local function fail(what) error({ json = what .. " at byte " .. pos }) end
  local function skip() pos = text:find("[^ \t\r\n]", pos) or (#text + 1) end
  local simple = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }
  local value

  local function string_value()
    pos = pos + 1
    local parts = {}
    while true do
      local i = text:find('["\\]', pos)
      if not i then fail("unterminated string") end
      parts[#parts + 1] = text:sub(pos, i - 1)
      if text:sub(i, i) == '"' then
        pos = i + 1
        return table.concat(parts)
      end
      local esc = text:sub(i + 1, i + 1)
      if simple[esc] then
        parts[#parts + 1] = simple[esc]
        pos = i + 2
      elseif esc == "u" then
        local code = tonumber(text:sub(i + 2, i + 5), 16) or fail("bad \\u escape")
        pos = i + 6
        if code >= 0xD800 and code <= 0xDBFF and text:sub(pos, pos + 1) == "\\u" then
          local low = tonumber(text:sub(pos + 2, pos + 5), 16) or fail("bad \\u escape")
          if low >= 0xDC00 and low <= 0xDFFF then
            code = 0x10000 + (code - 0xD800) * 0x400 + (low - 0xDC00)
            pos = pos + 6
          end
        end
        parts[#parts + 1] = utf8.char(code)
      else
        fail("bad escape")
      end
    end
  end

  function value()
    skip()
    local c = text:sub(pos, pos)
    if c == "{" then
      local object = {}
      pos = pos + 1
      skip()
      if text:sub(pos, pos) == "}" then pos = pos + 1 return object end
      while true do
        skip()
        if text:sub(pos, pos) ~= '"' then fail("expected a key") end
        local key = string_value()
        skip()
        if text:sub(pos, pos) ~= ":" then fail("expected ':'") end
        pos = pos + 1
        object[key] = value()
        skip()
        local sep = text:sub(pos, pos)
        pos = pos + 1
        if sep == "}" then return object end
        if sep ~= "," then fail("expected ',' or '}'") end
      end
    elseif c == "[" then
      local array = {}
      pos = pos + 1
      skip()
      if text:sub(pos, pos) == "]" then pos = pos + 1 return array end
      while true do
        array[#array + 1] = value()
        skip()
        local sep = text:sub(pos, pos)
        pos = pos + 1
        if sep == "]" then return array end
        if sep ~= "," then fail("expected ',' or ']'") end
      end
    elseif c == '"' then
      return string_value()
    elseif text:find("^true", pos) then
      pos = pos + 4
      return true
    elseif text:find("^false", pos) then
      pos = pos + 5
      return false
    elseif text:find("^null", pos) then
      pos = pos + 4
      return nil
    else
      local number = text:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
      if not number or number == "" then fail("unexpected character") end
      pos = pos + #number
      return tonumber(number)
    end
  end

  local ok, result = pcall(function()
    local v = value()
    skip()
    if pos <= #text then fail("trailing characters") end
    return v
  end)
  if ok then return result end
  if type(result) == "table" then return nil, result.json end
  return nil, tostring(result)
end

-- ------------------------------------------------------------------------------------------
-- preferences (lua options) and the storage widget

dt.preferences.register(MODULE, "on_existing", "enum", "raw2rgb: existing TIFFs/DNGs",
  "overwrite: convert again and replace the TIFF or DNG; skip: keep it (it is still imported and grouped)",
  "overwrite", table.unpack(ON_EXISTING))
-- Off by default: a conversion then never reorders the user's groups (the RAW, or whatever led
-- its group, e.g. a camera JPEG, stays on top of a collapsed group), exactly as for TIFFs.
dt.preferences.register(MODULE, "dng_group_leader", "bool", "raw2rgb: make the DNG the group leader",
  "on: an imported editable DNG leads the group of its RAW (the collapsed group shows the DNG); "
  .. "off: the group keeps its leader", false)
dt.preferences.register(MODULE, "format", "enum", "raw2rgb: output",
  "finished TIFF: developed by raw2rgb, ready to use; editable DNG: demosaiced and denoised by raw2rgb, "
  .. "then developed in darktable like a RAW (white balance, exposure, colour)",
  FORMATS[1], table.unpack(FORMATS))
dt.preferences.register(MODULE, "output_folder", "string", "raw2rgb: output folder",
  "where the TIFFs and DNGs go; $(FILE_FOLDER) is the folder of the RAW, a relative folder is taken inside it",
  "$(FILE_FOLDER)/raw2rgb")
-- a float preference: darktablerc key lua/raw2rgb/denoise, a spin button from 0 to 2 by 0.1
dt.preferences.register(MODULE, "denoise", "float", "raw2rgb: denoise strength",
  "for a noise-aware profile: 0 keeps all detail and grain, 1 is raw2rgb's default, 2 denoises "
  .. "strongly; other profiles ignore it", recorded_denoise(), DENOISE_MIN, DENOISE_MAX, 0.1)
dt.preferences.register(MODULE, "lens", "enum", "raw2rgb: lens corrections",
  "finished TIFFs: auto corrects distortion, colour fringes and vignetting from lensfun's database, "
  .. "except for images whose darktable lens correction module is on (their lens is left to it); "
  .. "off never corrects. Editable DNGs are left to darktable's lens module",
  LENS_MODES[1], table.unpack(LENS_MODES))
dt.preferences.register(MODULE, "device", "enum", "raw2rgb: device",
  "auto picks CUDA, then Apple MPS, then the CPU", recorded(RECORDED_DEVICE, "auto"), table.unpack(DEVICES))
dt.preferences.register(MODULE, "profile", "string", "raw2rgb: profile",
  "profile name or .safetensors path; empty: raw2rgb's default for the device",
  recorded(RECORDED_PROFILE, ""))
dt.preferences.register(MODULE, "dng_profile", "string", "raw2rgb: profile for DNGs",
  "scene-linear profile name or .safetensors path for the editable DNG output; empty: raw2rgb's default "
  .. "for DNGs (develop-lite)", "")
dt.preferences.register(MODULE, "executable", "string", "raw2rgb: executable",
  "absolute path of the raw2rgb program (darktable may not see your shell's PATH)",
  recorded(RECORDED_EXECUTABLE, "raw2rgb"))

local PREFERENCE_KINDS = {
  device = "enum", on_existing = "enum", denoise = "float", format = "enum", dng_group_leader = "bool",
  lens = "enum",
}

local function pref(name)
  return dt.preferences.read(MODULE, name, PREFERENCE_KINDS[name] or "string")
end

local function index_of(list, value)
  for i, v in ipairs(list) do
    if v == value then return i end
  end
  return 1
end

--- The output format preference, one of FORMATS (a stale or hand-edited value reads as the first).
local function format_pref()
  local format = pref("format")
  if FORMAT_ARGUMENT[format] == nil then return FORMATS[1] end
  return format
end

-- The format whose profile the widget's profile entry shows: the entry is saved to that format's
-- profile preference, also when the format was changed meanwhile in the preferences dialog.
local entry_format = format_pref()

local widgets = {
  profile = dt.new_widget("entry") {
    text = pref(PROFILE_PREFERENCE[entry_format]),
    placeholder = PROFILE_PLACEHOLDER[entry_format],
    tooltip = "profile name or .safetensors path, for the output chosen above (TIFFs and DNGs have one each)",
    editable = true,
  },
  output_folder = dt.new_widget("entry") {
    text = pref("output_folder"),
    tooltip = "$(FILE_FOLDER) is the folder of the RAW; a relative folder is taken inside it",
    editable = true,
  },
  device = dt.new_widget("combobox") {
    label = "device",
    tooltip = "auto picks CUDA, then Apple MPS, then the CPU",
    selected = index_of(DEVICES, pref("device")),
    changed_callback = function(w) dt.preferences.write(MODULE, "device", "enum", w.value) end,
    "auto", "cpu", "cuda", "mps",
  },
}

-- after the table: its callback reaches the profile entry through `widgets`
widgets.format = dt.new_widget("combobox") {
  label = "output",
  tooltip = "finished TIFF: developed by raw2rgb; editable DNG: demosaiced and denoised, "
    .. "developed further in darktable",
  selected = index_of(FORMATS, entry_format),
  changed_callback = function(w)
    if FORMAT_ARGUMENT[w.value] == nil then return end
    -- the profile entry follows the output: keep what it held, show the new output's profile
    dt.preferences.write(MODULE, PROFILE_PREFERENCE[entry_format], "string", widgets.profile.text or "")
    dt.preferences.write(MODULE, "format", "enum", w.value)
    entry_format = w.value
    widgets.profile.text = pref(PROFILE_PREFERENCE[entry_format])
    widgets.profile.placeholder = PROFILE_PLACEHOLDER[entry_format]
  end,
  FORMATS[1], FORMATS[2],
}

local storage_widget = dt.new_widget("box") {
  orientation = "vertical",
  dt.new_widget("label") { label = "converts the original RAW; darktable edits are not applied" },
  widgets.format,
  dt.new_widget("label") { label = "profile" },
  widgets.profile,
  widgets.device,
  dt.new_widget("label") { label = "output folder" },
  widgets.output_folder,
}

--- The settings for one run, from the widget (saved back as preferences) and the preferences.
local function current_settings()
  dt.preferences.write(MODULE, PROFILE_PREFERENCE[entry_format], "string", widgets.profile.text or "")
  dt.preferences.write(MODULE, "output_folder", "string", widgets.output_folder.text or "")
  local executable = pref("executable")
  if executable == "" then executable = recorded(RECORDED_EXECUTABLE, "raw2rgb") end
  local folder = pref("output_folder")
  if folder == "" then folder = "$(FILE_FOLDER)" end
  local format = format_pref()
  -- a stale or hand-edited value reads as the default, auto
  local lens = pref("lens")
  if lens ~= "off" then lens = "auto" end
  return {
    executable = executable,
    profile = pref(PROFILE_PREFERENCE[format]),
    device = pref("device"),
    denoise = denoise_argument(pref("denoise")),
    output_folder = folder,
    overwrite = pref("on_existing") ~= "skip",
    format = format,
    format_argument = FORMAT_ARGUMENT[format],
    -- a DNG gets no --lens: raw2rgb leaves its lens to darktable (and refuses --lens auto for it)
    lens = FORMAT_ARGUMENT[format] == false and lens or nil,
    dng_group_leader = FORMAT_ARGUMENT[format] == "dng" and pref("dng_group_leader") == true,
  }
end

-- ------------------------------------------------------------------------------------------
-- conversion

local function source_path(image)
  return image.path .. "/" .. image.filename
end

-- ------------------------------------------------------------------------------------------
-- darktable's own lens correction (see LENS CORRECTIONS above)

--- A field of one history item of a darktable XMP: exiv2 writes them as attributes
--- (darktable:operation="lens"); the element form is read as well.
local function history_field(item, name)
  return item:match("darktable:" .. name .. '%s*=%s*"([^"]*)"')
    or item:match("<darktable:" .. name .. ">%s*([^<]-)%s*</darktable:" .. name .. ">")
end

--- Whether the history in the XMP text `xmp` has the lens correction module on: for each instance
--- (multi_priority) of the "lens" operation, its last item before history_end (the history
--- step shown in the darkroom) decides. No history, or none in reach: off.
local function lens_module_on(xmp)
  local history = xmp:match("<darktable:history>(.-)</darktable:history>")
  if not history then return false end
  local history_end = tonumber(history_field(xmp, "history_end") or "")
  local enabled, position = {}, 0
  local start = history:find("<rdf:li", 1, true)
  while start do
    -- one item: from its "<rdf:li" to the next one
    local next_start = history:find("<rdf:li", start + 1, true)
    local item = history:sub(start, (next_start or #history + 1) - 1)
    start = next_start
    local num = tonumber(history_field(item, "num") or "") or position
    position = position + 1
    if history_field(item, "operation") == "lens" and (not history_end or num < history_end) then
      enabled[history_field(item, "multi_priority") or "0"] = history_field(item, "enabled") == "1"
    end
  end
  for _, on in pairs(enabled) do
    if on then return true end
  end
  return false
end

--- The XMP that darktable's "copy" format writes beside its copy of the original: the image's
--- history as darktable's library holds it now (written whatever write_sidecar_files says).
--- The copy goes to darktable's temporary folder, as an export's does, and is deleted at once.
local function library_history_xmp(image)
  local made, copy_format = pcall(dt.new_format, "copy")
  if not made then return "" end
  -- the format names its copy <base><the original's extension>, and the XMP <copy>.xmp
  local base = dt.configuration.tmp_dir .. "/raw2rgb-history-" .. image.id .. "."
  local copy = base .. (image.filename:match("%.([^.]*)$") or "")
  -- write_image() returns false on success in darktable 4.2, true in 5.0: the XMP tells
  copy_format:write_image(image, base)
  local xmp = read_file(copy .. ".xmp")
  os.remove(copy)
  os.remove(copy .. ".xmp")
  return xmp
end

--- `--lens` for `image`: nil for a DNG; the preference, or off where darktable's lens module is
--- on for the image while the preference is auto. `xmp_by_id` holds the XMPs an export copied.
local function lens_for(image, settings, xmp_by_id)
  if settings.lens ~= "auto" then return settings.lens end
  local xmp = xmp_by_id and xmp_by_id[image.id] or library_history_xmp(image)
  if lens_module_on(xmp) then
    dt.print_log("raw2rgb: " .. image.filename .. ": darktable's lens correction is on, converting with --lens off")
    return "off"
  end
  return "auto"
end

local function output_folder_for(image, settings)
  local folder = replace_plain(settings.output_folder, "$(FILE_FOLDER)", image.path)
  local home = os.getenv("HOME")
  if home and (folder == "~" or folder:sub(1, 2) == "~/") then folder = home .. folder:sub(2) end
  if folder:sub(1, 1) ~= "/" then folder = image.path .. "/" .. folder end
  return folder
end

--- Run `raw2rgb convert` once for `sources` (absolute paths) into `folder`, with `--lens lens`
--- unless that is nil.
--- Returns {source → {status=, output=, error=}}; when the converter gave no summary, a message
--- for the whole batch and whether the settings are at fault (no converter, bad profile: exit
--- status 2, 126 or 127), which would fail every other batch alike.
local function run_converter(sources, folder, lens, settings)
  local stdout_file, stderr_file = os.tmpname(), os.tmpname()
  local words = { shell_quote(settings.executable), "convert" }
  for _, source in ipairs(sources) do words[#words + 1] = shell_quote(source) end
  words[#words + 1] = "--output-dir " .. shell_quote(folder)
  words[#words + 1] = "--device " .. shell_quote(settings.device)
  -- digits and one point only (denoise_argument), quoted all the same like every other value
  words[#words + 1] = "--denoise " .. shell_quote(settings.denoise)
  if settings.profile ~= "" then words[#words + 1] = "--profile " .. shell_quote(settings.profile) end
  if settings.format_argument then words[#words + 1] = "--format " .. shell_quote(settings.format_argument) end
  if lens then words[#words + 1] = "--lens " .. shell_quote(lens) end
  words[#words + 1] = settings.overwrite and "--overwrite" or "--skip-existing"
  words[#words + 1] = "--quiet --json"
  local command = table.concat(words, " ") .. " >" .. shell_quote(stdout_file) .. " 2>" .. shell_quote(stderr_file)
  dt.print_log("raw2rgb: " .. command)

  local status = dt.control.execute(command)
  local stdout, stderr = read_file(stdout_file), read_file(stderr_file)
  os.remove(stdout_file)
  os.remove(stderr_file)
  -- execute() hands back the raw wait status: the exit code sits in the second byte.
  local exit_code = (status % 256 == 0) and (status // 256) or -1

  local summary = json_decode(stdout)
  if type(summary) ~= "table" or type(summary.files) ~= "table" then
    local message
    if exit_code == 127 or exit_code == 126 then
      message = "cannot run " .. settings.executable .. " — set its path in preferences > lua options"
    else
      message = last_line(stderr) or ("raw2rgb stopped (status " .. tostring(status) .. ")")
    end
    return {}, message, exit_code == 2 or exit_code == 126 or exit_code == 127
  end
  local results = {}
  for _, entry in ipairs(summary.files) do
    if type(entry) == "table" and type(entry.input) == "string" then
      results[entry.input] = entry
    end
  end
  return results, nil, false
end

local function copy_tags(from, to)
  local ok, tags = pcall(dt.tags.get_tags, from)
  if not ok or type(tags) ~= "table" then return end
  for _, tag in ipairs(tags) do
    local named, name = pcall(function() return tag.name end)
    if named and type(name) == "string" and not name:find("^darktable|") then
      pcall(dt.tags.attach, tag, to)
    end
  end
end

local function import_result(image, output, settings)
  local imported = dt.database.import(output)
  if not imported then return false end
  -- a file converted again keeps its database entry: drop its stale thumbnail
  pcall(function() imported:drop_cache() end)
  imported:group_with(image.group_leader)
  if settings.dng_group_leader then imported:make_group_leader() end
  copy_tags(image, imported)
  return true
end

local function report(summary)
  local message = "raw2rgb: " .. summary.converted .. " converted"
  if summary.failed > 0 then message = message .. ", " .. summary.failed .. " failed" end
  if summary.not_converted > 0 then message = message .. ", " .. summary.not_converted .. " cancelled" end
  if #summary.lens_module_on > 0 then
    message = message .. " (lens left to darktable's lens correction for " .. #summary.lens_module_on .. ")"
  end
  dt.print(message)
  script_data.runs[#script_data.runs + 1] = summary
end

--- What to convert: one item per RAW file ({image, source, folder, lens}) and the batches of up
--- to BATCH_SIZE of them that share an output folder and a --lens; plus the names of the images
--- whose lens is left to darktable's lens module.
local function plan_batches(images, settings, xmp_by_id)
  -- Versions of one RAW share its file: convert it once, as the first of them (its history
  -- decides the lens), and group it with that one.
  local work, seen, lens_module_on = {}, {}, {}
  for _, image in ipairs(images) do
    local source = source_path(image)
    if not seen[source] then
      seen[source] = true
      local lens = settings.lens and lens_for(image, settings, xmp_by_id)
      if settings.lens == "auto" and lens == "off" then lens_module_on[#lens_module_on + 1] = image.filename end
      work[#work + 1] = { image = image, source = source, folder = output_folder_for(image, settings), lens = lens }
    end
  end

  local batches, open = {}, {}
  for _, item in ipairs(work) do
    local key = item.folder .. "\0" .. tostring(item.lens)
    local batch = open[key]
    if not batch or #batch.items >= BATCH_SIZE then
      batch = { folder = item.folder, lens = item.lens, items = {} }
      open[key] = batch
      batches[#batches + 1] = batch
    end
    batch.items[#batch.items + 1] = item
  end
  return work, batches, lens_module_on
end

--- Convert the original RAW of each image, import the TIFFs, group and tag them.
--- `summary` holds extra fields for the run's summary; `xmp_by_id` the history XMPs an export
--- copied (nil: read each image's history when the lens preference needs it).
local function convert_images(images, settings, summary, xmp_by_id)
  local work, batches, lens_module_on = plan_batches(images, settings, xmp_by_id)

  local cancelled = false
  local job = dt.gui.create_job("raw2rgb: converting " .. #work .. " image(s)", true,
    function() cancelled = true end)
  local done, converted, failed, messages = 0, 0, 0, {}
  local function failure(image, reason)
    failed = failed + 1
    messages[#messages + 1] = image.filename .. ": " .. reason
    dt.print("raw2rgb: " .. image.filename .. ": " .. reason)
  end

  local fatal = nil
  for _, batch in ipairs(batches) do
    if cancelled then break end
    local sources = {}
    for _, item in ipairs(batch.items) do sources[#sources + 1] = item.source end
    local results, batch_error = {}, fatal
    if not fatal then
      local settings_at_fault
      results, batch_error, settings_at_fault = run_converter(sources, batch.folder, batch.lens, settings)
      if settings_at_fault then fatal = batch_error end
    end

    for _, item in ipairs(batch.items) do
      local entry = results[item.source]
      if entry and (entry.status == "converted" or entry.status == "skipped") and type(entry.output) == "string" then
        if import_result(item.image, entry.output, settings) then
          converted = converted + 1
        else
          failure(item.image, "converted, but darktable could not import " .. entry.output)
        end
      else
        failure(item.image, batch_error
          or (entry and type(entry.error) == "string" and entry.error)
          or "the converter gave no result for it")
      end
      done = done + 1
    end
    if job.valid then job.percent = done / #work end
  end

  if job.valid then job.valid = false end
  summary = summary or {}
  summary.converted, summary.failed, summary.not_converted = converted, failed, #work - done
  summary.format = settings.format
  summary.messages = messages
  summary.lens_module_on = lens_module_on
  report(summary)
end

-- ------------------------------------------------------------------------------------------
-- export storage

local function storage_initialize(storage, format, images, high_quality, extra_data)
  extra_data.settings = current_settings()
  extra_data.images = {}
  extra_data.history_xmp = {}
  return nil -- the list must stay untouched: see WHY THE "copy" FORMAT above
end

local function storage_store(storage, image, format, filename, number, total, high_quality, extra_data)
  extra_data.images[#extra_data.images + 1] = image
  extra_data.format = format.plugin_name
  -- darktable's copy of the original (and its .xmp) in its temporary folder is not needed, but
  -- that .xmp is the image's history as the library holds it (see LENS CORRECTIONS)
  local extension = image.filename:match("%.([^.]*)$") or ""
  if (extra_data.settings or {}).lens == "auto" then
    extra_data.history_xmp[image.id] = read_file(filename .. extension .. ".xmp")
  end
  os.remove(filename)
  os.remove(filename .. extension)
  os.remove(filename .. extension .. ".xmp")
end

local function storage_finalize(storage, image_table, extra_data)
  convert_images(extra_data.images or {}, extra_data.settings or current_settings(),
    { export_format = extra_data.format }, extra_data.history_xmp)
end

local copy_format_available = pcall(dt.new_format, "copy")

local function storage_supported(storage, format)
  if not copy_format_available then return true end
  return format.plugin_name == "copy"
end

dt.register_storage(MODULE, STORAGE_LABEL, storage_store, storage_finalize,
  storage_supported, storage_initialize, storage_widget)

-- ------------------------------------------------------------------------------------------
-- render-free action: a shortcut and a button in the selected images module

local function convert_selected(images)
  if not images or #images == 0 then
    dt.print("raw2rgb: select the RAW images to convert first")
    report({ converted = 0, failed = 0, not_converted = 0, messages = { "no image selected" }, lens_module_on = {} })
    return
  end
  convert_images(images, current_settings())
end

dt.register_event(MODULE, "shortcut", function(event, shortcut)
  convert_selected(dt.gui.action_images)
end, ACTION_LABEL)

dt.gui.libs.image.register_action(MODULE, ACTION_LABEL, function(event, images)
  convert_selected(images)
end, "convert the original RAW of the selected images with raw2rgb, import and group the TIFFs")

-- ------------------------------------------------------------------------------------------

local function destroy()
  dt.destroy_storage(MODULE)
  dt.destroy_event(MODULE, "shortcut")
  dt.gui.libs.image.destroy_action(MODULE)
end

script_data.destroy = destroy

return script_data
