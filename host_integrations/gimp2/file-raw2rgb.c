/*
 * file-raw2rgb: open camera RAW files in GIMP 2.10 through raw2rgb (neural RAW development).
 *
 * Copyright (c) the raw2rgb developers. MIT licence.
 *
 * GIMP 2.10 has no Python, and Script-Fu cannot start programs, so this small C plug-in does it:
 * it runs `raw2rgb convert --json` into a temporary folder, opens the 16-bit TIFF whose path
 * raw2rgb reports in its JSON summary (with its ICC profile and EXIF) through GIMP's TIFF loader,
 * names the image after the RAW and removes the temporary files. A failed conversion shows the
 * reason the summary gives for the file.
 *
 * Procedures
 *   file-raw2rgb-raw-load  the RAW loader (pick it under Edit > Preferences > Image Import & Export >
 *                          Raw Image Importer); profile, device, denoise strength and lens
 *                          corrections come from the environment (RAW2RGB_PROFILE, RAW2RGB_DEVICE,
 *                          RAW2RGB_DENOISE, RAW2RGB_LENS) or from `raw2rgb install gimp2`
 *   plug-in-raw2rgb-open   the same with explicit profile and device, for batch use
 *   plug-in-raw2rgb-open2  the same with explicit profile, device, denoise strength and lens
 *                          corrections: the arguments of GIMP 3's plug-in-raw2rgb-open
 *
 * The denoise strength (`raw2rgb convert --denoise`, 0-2) and the lens corrections (`--lens
 * auto|off`) are no arguments of the first two, on purpose:
 * - GIMP 2.10 would register a load handler with a 4th argument (it checks only the first three:
 *   run-mode, filename, raw-filename), but its own File > Open and gimp-file-load call the handler
 *   with those three and fill the rest with each argument's default. A plug-in cannot set defaults
 *   in GIMP 2: a GIMP_PDB_FLOAT argument always defaults to 0.0, which is a real strength ("keep
 *   all the grain") the plug-in could not tell from a caller's 0, so every File > Open would
 *   silently turn denoising off.
 * - Script-Fu calls a procedure only with exactly its number of arguments, so a 5th argument to
 *   plug-in-raw2rgb-open would break every script that calls it with four.
 * So those two take the strength from RAW2RGB_DENOISE, else from `raw2rgb install gimp2 --denoise
 * S`, else 1 (raw2rgb's default), as they take the profile and the device, and the lens
 * corrections from RAW2RGB_LENS, else auto (what raw2rgb does for any TIFF). A script that chooses
 * them per call uses plug-in-raw2rgb-open2: a new procedure, GIMP 2's own way to extend one
 * (file-png-save2), which Script-Fu always calls with every argument.
 *
 * Build and install: `raw2rgb install gimp2` (it records the raw2rgb executable, profile, device
 * and denoise strength through a generated header passed with -include). By hand:
 *   gcc -O2 -DRAW2RGB_DENOISE_MIN=0.0 -DRAW2RGB_DENOISE_MAX=2.0 -DRAW2RGB_DENOISE_DEFAULT=1.0 \
 *       -o file-raw2rgb file-raw2rgb.c $(gimptool-2.0 --cflags-noui --libs-noui)
 */

#include <string.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <libgimp/gimp.h>

#define LOAD_PROC "file-raw2rgb-raw-load"
#define OPEN_PROC "plug-in-raw2rgb-open"
#define OPEN2_PROC "plug-in-raw2rgb-open2"
#define PLUG_IN_BINARY "file-raw2rgb"

/* The RAW extensions of raw2rgb_plugin.engine.plan.RAW_EXTENSIONS (a test keeps them equal). */
#define RAW_EXTENSIONS                                                                        \
  "3fr,ari,arw,bay,cr2,cr3,crw,cs1,dcr,dcs,dng,drf,eip,erf,fff,gpr,iiq,k25,kdc,mdc,mef,mos,"  \
  "mrw,nef,nrw,orf,pef,ptx,pxn,qtk,raf,raw,rw2,rwl,rwz,sr2,srf,srw,sti,x3f"

/* Recorded by `raw2rgb install gimp2`; empty means "not recorded". */
#ifndef RAW2RGB_RECORDED_EXECUTABLE
#define RAW2RGB_RECORDED_EXECUTABLE ""
#endif
#ifndef RAW2RGB_RECORDED_PROFILE
#define RAW2RGB_RECORDED_PROFILE ""
#endif
#ifndef RAW2RGB_RECORDED_DEVICE
#define RAW2RGB_RECORDED_DEVICE ""
#endif
#ifndef RAW2RGB_RECORDED_DENOISE
#define RAW2RGB_RECORDED_DENOISE ""
#endif

/* `raw2rgb convert --denoise` range and default (0 keeps all detail and grain, 2 denoises
 * strongly): raw2rgb's own definition, in the header `raw2rgb install gimp2` generates. */
#if !defined RAW2RGB_DENOISE_MIN || !defined RAW2RGB_DENOISE_MAX || !defined RAW2RGB_DENOISE_DEFAULT
#error "build with `raw2rgb install gimp2`, or pass -DRAW2RGB_DENOISE_MIN=0.0 -DRAW2RGB_DENOISE_MAX=2.0 -DRAW2RGB_DENOISE_DEFAULT=1.0"
#endif
#define DENOISE_MIN RAW2RGB_DENOISE_MIN
#define DENOISE_MAX RAW2RGB_DENOISE_MAX

/* `raw2rgb convert --lens` (raw2rgb_plugin.vocabulary.LENS_MODES; a test keeps them equal):
 * corrections on, the default for a TIFF, then off. */
static const gchar *const LENS_MODES[] = { "auto", "off" };

/* What one conversion runs with, from the procedure's arguments or the environment. */
typedef struct
{
  const gchar *profile;
  const gchar *device;
  gchar       *denoise;  /* `--denoise`'s value (owned) */
  const gchar *lens;     /* `--lens`'s value, one of LENS_MODES */
} Settings;

static void query (void);
static void run   (const gchar      *name,
                   gint              nparams,
                   const GimpParam  *param,
                   gint             *nreturn_vals,
                   GimpParam       **return_vals);

const GimpPlugInInfo PLUG_IN_INFO = { NULL, NULL, query, run };

MAIN ()

static void
query (void)
{
  static const GimpParamDef load_args[] =
  {
    { GIMP_PDB_INT32,  "run-mode",     "The run mode { RUN-INTERACTIVE (0), RUN-NONINTERACTIVE (1) }" },
    { GIMP_PDB_STRING, "filename",     "The name of the RAW file to load" },
    { GIMP_PDB_STRING, "raw-filename", "The name entered" },
  };
  static const GimpParamDef open_args[] =
  {
    { GIMP_PDB_INT32,  "run-mode", "The run mode { RUN-INTERACTIVE (0), RUN-NONINTERACTIVE (1) }" },
    { GIMP_PDB_STRING, "filename", "The name of the RAW file to open" },
    { GIMP_PDB_STRING, "profile",  "raw2rgb profile name or .safetensors path (empty: raw2rgb's default)" },
    { GIMP_PDB_STRING, "device",   "auto, cpu, cuda or mps (empty: auto)" },
  };
  static const GimpParamDef open2_args[] =
  {
    { GIMP_PDB_INT32,  "run-mode", "The run mode { RUN-INTERACTIVE (0), RUN-NONINTERACTIVE (1) }" },
    { GIMP_PDB_STRING, "filename", "The name of the RAW file to open" },
    { GIMP_PDB_STRING, "profile",  "raw2rgb profile name or .safetensors path (empty: raw2rgb's default)" },
    { GIMP_PDB_STRING, "device",   "auto, cpu, cuda or mps (empty: auto)" },
    { GIMP_PDB_FLOAT,  "denoise",  "Denoising strength of a noise-aware profile, 0 to 2: 0 keeps all "
                                   "detail and grain, 1 is raw2rgb's default, 2 denoises strongly" },
    { GIMP_PDB_INT32,  "lens-corrections", "TRUE: correct the lens's distortion, colour fringes and "
                                   "vignetting from lensfun's database (--lens auto); FALSE: leave them" },
  };
  static const GimpParamDef image_return[] =
  {
    { GIMP_PDB_IMAGE, "image", "The 16-bit image raw2rgb developed" },
  };

  gimp_install_procedure (LOAD_PROC,
                          "Open a camera RAW file developed by raw2rgb (neural RAW-to-RGB)",
                          "Runs `raw2rgb convert` on the RAW file and opens the 16-bit TIFF "
                          "it writes, with its ICC profile and EXIF. The profile, device, "
                          "denoise strength and lens corrections come from RAW2RGB_PROFILE, "
                          "RAW2RGB_DEVICE, RAW2RGB_DENOISE and RAW2RGB_LENS (auto or off), else "
                          "from the values `raw2rgb install gimp2` recorded, else raw2rgb's "
                          "defaults.",
                          "raw2rgb developers",
                          "raw2rgb developers (MIT)",
                          "2025",
                          "Camera RAW developed by raw2rgb",
                          NULL,
                          GIMP_PLUGIN,
                          G_N_ELEMENTS (load_args),
                          G_N_ELEMENTS (image_return),
                          load_args, image_return);

  gimp_register_file_handler_mime (LOAD_PROC, "image/x-dcraw");
  gimp_register_file_handler_raw (LOAD_PROC);
  /* No magics: a DNG starts like any TIFF, so only the extension can tell it. */
  gimp_register_load_handler (LOAD_PROC, RAW_EXTENSIONS, "");

  gimp_install_procedure (OPEN_PROC,
                          "Open a camera RAW file through raw2rgb with a given profile and device",
                          "Batch form of " LOAD_PROC ": the profile and device are arguments; "
                          "the denoise strength comes from RAW2RGB_DENOISE, else from "
                          "`raw2rgb install gimp2`, else 1; the lens corrections from "
                          "RAW2RGB_LENS (auto or off), else auto.",
                          "raw2rgb developers",
                          "raw2rgb developers (MIT)",
                          "2025",
                          NULL,
                          NULL,
                          GIMP_PLUGIN,
                          G_N_ELEMENTS (open_args),
                          G_N_ELEMENTS (image_return),
                          open_args, image_return);

  gimp_install_procedure (OPEN2_PROC,
                          "Open a camera RAW file through raw2rgb with a given profile, device, "
                          "denoise strength and lens corrections",
                          "Batch form of " LOAD_PROC " with all of raw2rgb's settings as "
                          "arguments, as GIMP 3's plug-in-raw2rgb-open takes them.",
                          "raw2rgb developers",
                          "raw2rgb developers (MIT)",
                          "2025",
                          NULL,
                          NULL,
                          GIMP_PLUGIN,
                          G_N_ELEMENTS (open2_args),
                          G_N_ELEMENTS (image_return),
                          open2_args, image_return);
}

/* The environment's value, else the recorded one, else NULL. */
static const gchar *
setting (const gchar *env_name,
         const gchar *recorded)
{
  const gchar *value = g_getenv (env_name);

  if (value && *value)
    return value;
  if (recorded && *recorded)
    return recorded;
  return NULL;
}

/*
 * `--denoise`'s value from RAW2RGB_DENOISE, else the recorded strength, else raw2rgb's default: a
 * plain decimal ("0.5") read and written with GLib's ASCII functions, which ignore the locale (a
 * German one would write "0,5"). NULL, with `error` set, for a value outside the range.
 */
static gchar *
denoise_argument (GError **error)
{
  const gchar *text = setting ("RAW2RGB_DENOISE", RAW2RGB_RECORDED_DENOISE);
  gchar        buffer[G_ASCII_DTOSTR_BUF_SIZE];
  gchar       *end    = NULL;
  gdouble      value;

  if (! text)
    return g_strdup (g_ascii_formatd (buffer, sizeof buffer, "%g", RAW2RGB_DENOISE_DEFAULT));
  value = g_ascii_strtod (text, &end);
  if (end == text || *end != '\0' || ! (value >= DENOISE_MIN && value <= DENOISE_MAX))
    {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                   "raw2rgb: the denoise strength '%s' is not a number from %g to %g — fix "
                   "RAW2RGB_DENOISE or run `raw2rgb install gimp2 --denoise S` again", text, DENOISE_MIN, DENOISE_MAX);
      return NULL;
    }
  return g_strdup (g_ascii_formatd (buffer, sizeof buffer, "%g", value + 0.0));
}

/* A strength given as an argument as `--denoise`'s value; NULL, with `error` set, outside the range. */
static gchar *
denoise_given (gdouble   value,
               GError  **error)
{
  gchar buffer[G_ASCII_DTOSTR_BUF_SIZE];

  if (! (value >= DENOISE_MIN && value <= DENOISE_MAX))
    {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                   "raw2rgb: the denoise strength %g is not from %g to %g", value, DENOISE_MIN, DENOISE_MAX);
      return NULL;
    }
  return g_strdup (g_ascii_formatd (buffer, sizeof buffer, "%g", value + 0.0));
}

/* `--lens`'s value from RAW2RGB_LENS, else auto; NULL, with `error` set, for another value. */
static const gchar *
lens_from_environment (GError **error)
{
  const gchar *text = g_getenv ("RAW2RGB_LENS");
  gsize        i;

  if (! text || ! *text)
    return LENS_MODES[0];
  for (i = 0; i < G_N_ELEMENTS (LENS_MODES); i++)
    if (strcmp (text, LENS_MODES[i]) == 0)
      return LENS_MODES[i];
  g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL,
               "raw2rgb: RAW2RGB_LENS is '%s' — set it to auto (correct the lens from lensfun's "
               "database) or off", text);
  return NULL;
}

static gchar *
last_line (const gchar *text)
{
  gchar  **lines  = g_strsplit (text ? text : "", "\n", -1);
  gchar   *result = NULL;
  gint     i;

  for (i = 0; lines[i]; i++)
    {
      gchar *line = g_strstrip (lines[i]);

      if (*line)
        {
          g_free (result);
          result = g_strdup (line);
        }
    }
  g_strfreev (lines);
  return result;
}

/*
 * Reading `raw2rgb convert --json`.
 *
 * raw2rgb reports the path of each TIFF it wrote, or why it could not, in the JSON summary it
 * prints on stdout: {"profile": ..., "files": [{"input": ..., "output": ..., "status": ...,
 * "error": ...}, ...]}. The plug-in reads the first entry of `files` instead of guessing the TIFF's
 * name, as darktable's storage does.
 *
 * libgimp 2.0 brings GLib but no JSON parser. json-glib does reach this compiler line, but only
 * because GEGL's pkg-config file requires it: gimp-2.0.pc does not name it, so a plug-in that used
 * it would build or not depending on how GEGL was packaged. The summary is small and comes from
 * Python's json module, so this file carries a strict reader of just what it needs: the whole
 * document must be well-formed JSON (else it counts as no summary), and the strings of the first
 * file entry are decoded with every JSON escape (\" \\ \/ \b \f \n \r \t \uXXXX, surrogate pairs
 * joined into one UTF-8 character). Bytes outside escapes are kept as they are: a file name need not
 * be UTF-8, and raw2rgb passes such names through undecoded (Python's surrogateescape); a lone
 * \uDC80-\uDCFF escape, Python's spelling of such a byte, becomes that byte again.
 */

#define SUMMARY_MAX_DEPTH 64

typedef struct
{
  const gchar *at;
  const gchar *end;
} JsonCursor;

/* What the summary says of the first file; NULL where it gave no string. */
typedef struct
{
  gchar *status;
  gchar *output;
  gchar *error;
} FileReport;

static void
file_report_clear (FileReport *report)
{
  g_clear_pointer (&report->status, g_free);
  g_clear_pointer (&report->output, g_free);
  g_clear_pointer (&report->error, g_free);
}

static void
json_skip_space (JsonCursor *cursor)
{
  while (cursor->at < cursor->end &&
         (*cursor->at == ' ' || *cursor->at == '\t' || *cursor->at == '\n' || *cursor->at == '\r'))
    cursor->at++;
}

/* Consume `c` (after white space) if it comes next. */
static gboolean
json_take (JsonCursor *cursor,
           gchar       c)
{
  json_skip_space (cursor);
  if (cursor->at < cursor->end && *cursor->at == c)
    {
      cursor->at++;
      return TRUE;
    }
  return FALSE;
}

static gint
json_hex4 (const gchar *text)
{
  gint value = 0;
  gint i;

  for (i = 0; i < 4; i++)
    {
      gint digit = g_ascii_xdigit_value (text[i]);

      if (digit < 0)
        return -1;
      value = value * 16 + digit;
    }
  return value;
}

/* A string at the cursor (after white space), decoded into `out` unless that is NULL. */
static gboolean
json_read_string (JsonCursor *cursor,
                  GString    *out)
{
  json_skip_space (cursor);
  if (cursor->at >= cursor->end || *cursor->at != '"')
    return FALSE;
  cursor->at++;

  while (cursor->at < cursor->end)
    {
      guchar c = (guchar) *cursor->at++;

      if (c == '"')
        return TRUE;
      if (c < 0x20)
        return FALSE;  /* control characters must be escaped */
      if (c != '\\')
        {
          if (out)
            g_string_append_c (out, (gchar) c);
          continue;
        }

      if (cursor->at >= cursor->end)
        return FALSE;
      c = (guchar) *cursor->at++;
      switch (c)
        {
        case '"':  case '\\': case '/':
          if (out) g_string_append_c (out, (gchar) c);
          break;
        case 'b':  if (out) g_string_append_c (out, '\b'); break;
        case 'f':  if (out) g_string_append_c (out, '\f'); break;
        case 'n':  if (out) g_string_append_c (out, '\n'); break;
        case 'r':  if (out) g_string_append_c (out, '\r'); break;
        case 't':  if (out) g_string_append_c (out, '\t'); break;
        case 'u':
          {
            gint unit;
            gunichar code;

            if (cursor->end - cursor->at < 4 || (unit = json_hex4 (cursor->at)) < 0)
              return FALSE;
            cursor->at += 4;
            code = (gunichar) unit;

            if (unit >= 0xD800 && unit <= 0xDBFF)
              {
                gint low;

                /* a high surrogate must be followed by \u and a low one */
                if (cursor->end - cursor->at < 6 || cursor->at[0] != '\\' || cursor->at[1] != 'u' ||
                    (low = json_hex4 (cursor->at + 2)) < 0xDC00 || low > 0xDFFF)
                  return FALSE;
                cursor->at += 6;
                code = 0x10000 + (((gunichar) unit - 0xD800) << 10) + ((gunichar) low - 0xDC00);
              }
            else if (unit >= 0xDC80 && unit <= 0xDCFF)
              {
                /* a lone low surrogate from Python's surrogateescape: an undecodable byte */
                if (out)
                  g_string_append_c (out, (gchar) (unit - 0xDC00));
                break;
              }
            else if ((unit >= 0xDC00 && unit <= 0xDFFF) || unit == 0)
              {
                return FALSE;  /* a lone low surrogate, or a NUL no C string or path can hold */
              }

            if (out)
              g_string_append_unichar (out, code);
            break;
          }
        default:
          return FALSE;
        }
    }
  return FALSE;  /* the text ended inside the string */
}

static gboolean
json_skip_number (JsonCursor *cursor)
{
  const gchar *at = cursor->at;
  const gchar *end = cursor->end;

  if (at < end && *at == '-')
    at++;
  if (at < end && *at == '0')
    at++;
  else if (at < end && *at >= '1' && *at <= '9')
    while (at < end && g_ascii_isdigit (*at))
      at++;
  else
    return FALSE;
  if (at < end && *at == '.')
    {
      at++;
      if (at >= end || ! g_ascii_isdigit (*at))
        return FALSE;
      while (at < end && g_ascii_isdigit (*at))
        at++;
    }
  if (at < end && (*at == 'e' || *at == 'E'))
    {
      at++;
      if (at < end && (*at == '+' || *at == '-'))
        at++;
      if (at >= end || ! g_ascii_isdigit (*at))
        return FALSE;
      while (at < end && g_ascii_isdigit (*at))
        at++;
    }
  cursor->at = at;
  return TRUE;
}

static gboolean
json_skip_word (JsonCursor  *cursor,
                const gchar *word)
{
  gsize length = strlen (word);

  if ((gsize) (cursor->end - cursor->at) < length || strncmp (cursor->at, word, length) != 0)
    return FALSE;
  cursor->at += length;
  return TRUE;
}

/* Any value at the cursor, checked and passed over. */
static gboolean
json_skip_value (JsonCursor *cursor,
                 gint        depth)
{
  json_skip_space (cursor);
  if (cursor->at >= cursor->end || depth > SUMMARY_MAX_DEPTH)
    return FALSE;

  switch (*cursor->at)
    {
    case '"':
      return json_read_string (cursor, NULL);
    case '{':
      cursor->at++;
      if (json_take (cursor, '}'))
        return TRUE;
      do
        {
          if (! json_read_string (cursor, NULL) || ! json_take (cursor, ':') ||
              ! json_skip_value (cursor, depth + 1))
            return FALSE;
        }
      while (json_take (cursor, ','));
      return json_take (cursor, '}');
    case '[':
      cursor->at++;
      if (json_take (cursor, ']'))
        return TRUE;
      do
        {
          if (! json_skip_value (cursor, depth + 1))
            return FALSE;
        }
      while (json_take (cursor, ','));
      return json_take (cursor, ']');
    case 't':
      return json_skip_word (cursor, "true");
    case 'f':
      return json_skip_word (cursor, "false");
    case 'n':
      return json_skip_word (cursor, "null");
    default:
      return json_skip_number (cursor);
    }
}

/* A string value into *slot (replacing what a repeated key put there), or any other value skipped. */
static gboolean
json_read_member (JsonCursor  *cursor,
                  gchar      **slot,
                  gint         depth)
{
  GString *text;

  json_skip_space (cursor);
  if (cursor->at >= cursor->end || *cursor->at != '"')
    {
      g_clear_pointer (slot, g_free);  /* null or not a string: no value, as a later key decides */
      return json_skip_value (cursor, depth);
    }
  text = g_string_new (NULL);
  if (! json_read_string (cursor, text))
    {
      g_string_free (text, TRUE);
      return FALSE;
    }
  g_free (*slot);
  *slot = g_string_free (text, FALSE);
  return TRUE;
}

/* The object of a file entry: its status, output and error strings. */
static gboolean
json_read_file_entry (JsonCursor *cursor,
                      FileReport *report,
                      gint        depth)
{
  if (! json_take (cursor, '{'))
    return FALSE;
  if (json_take (cursor, '}'))
    return TRUE;
  do
    {
      GString  *key = g_string_new (NULL);
      gchar   **slot = NULL;
      gboolean  ok;

      ok = json_read_string (cursor, key) && json_take (cursor, ':');
      if (ok && strcmp (key->str, "status") == 0 && key->len == 6)
        slot = &report->status;
      else if (ok && strcmp (key->str, "output") == 0 && key->len == 6)
        slot = &report->output;
      else if (ok && strcmp (key->str, "error") == 0 && key->len == 5)
        slot = &report->error;
      g_string_free (key, TRUE);

      if (! ok || ! (slot ? json_read_member (cursor, slot, depth + 1) : json_skip_value (cursor, depth + 1)))
        return FALSE;
    }
  while (json_take (cursor, ','));
  return json_take (cursor, '}');
}

/* The `files` array: the first entry read into `report` (if it is an object), the rest checked. */
static gboolean
json_read_files (JsonCursor *cursor,
                 FileReport *report,
                 gboolean   *found,
                 gint        depth)
{
  gboolean first = TRUE;

  file_report_clear (report);
  *found = FALSE;
  if (! json_take (cursor, '['))
    return json_skip_value (cursor, depth);  /* not an array: no files */
  if (json_take (cursor, ']'))
    return TRUE;
  do
    {
      json_skip_space (cursor);
      if (first && cursor->at < cursor->end && *cursor->at == '{')
        {
          if (! json_read_file_entry (cursor, report, depth + 1))
            return FALSE;
          *found = TRUE;
        }
      else if (! json_skip_value (cursor, depth + 1))
        {
          return FALSE;
        }
      first = FALSE;
    }
  while (json_take (cursor, ','));
  return json_take (cursor, ']');
}

/*
 * Read raw2rgb's JSON summary `text` (`length` bytes). TRUE when it is one well-formed JSON object
 * whose `files` array starts with an object; that entry's strings are then in `report` (free them
 * with file_report_clear). FALSE leaves `report` empty.
 */
static gboolean
read_summary (const gchar *text,
              gsize        length,
              FileReport  *report)
{
  JsonCursor cursor = { text, text + length };
  gboolean   found  = FALSE;
  gboolean   ok;

  memset (report, 0, sizeof *report);
  if (! text)
    return FALSE;
  ok = json_take (&cursor, '{');
  if (ok && ! json_take (&cursor, '}'))
    {
      do
        {
          GString  *key   = g_string_new (NULL);
          gboolean  files;

          ok = json_read_string (&cursor, key) && json_take (&cursor, ':');
          files = ok && key->len == 5 && strcmp (key->str, "files") == 0;
          g_string_free (key, TRUE);
          ok = ok && (files ? json_read_files (&cursor, report, &found, 1) : json_skip_value (&cursor, 1));
        }
      while (ok && json_take (&cursor, ','));
      ok = ok && json_take (&cursor, '}');
    }
  json_skip_space (&cursor);
  if (ok && found && cursor.at == cursor.end)
    return TRUE;
  file_report_clear (report);
  return FALSE;
}

/* The TIFF each file leaves in the temporary folder, and whatever else it wrote there, go. */
static void
remove_folder (const gchar *folder)
{
  GDir        *dir = g_dir_open (folder, 0, NULL);
  const gchar *name;

  if (dir)
    {
      while ((name = g_dir_read_name (dir)))
        {
          gchar *path = g_build_filename (folder, name, NULL);

          g_unlink (path);
          g_free (path);
        }
      g_dir_close (dir);
    }
  g_rmdir (folder);
}

static gint32
load_with_raw2rgb (const gchar     *filename,
                   const Settings  *settings,
                   GError         **error)
{
  const gchar *profile    = settings->profile;
  const gchar *device     = settings->device;
  const gchar *executable = setting ("RAW2RGB_EXECUTABLE", RAW2RGB_RECORDED_EXECUTABLE);
  gchar       *basename   = g_path_get_basename (filename);
  gchar       *tmpdir     = NULL;
  gchar       *output     = NULL;
  gchar       *errors     = NULL;
  gint         status     = 0;
  gint32       image      = -1;
  GError      *spawn_error = NULL;
  FileReport   report     = { NULL, NULL, NULL };
  GPtrArray   *argv;

  if (! executable)
    executable = "raw2rgb";

  tmpdir = g_dir_make_tmp ("raw2rgb-gimp-XXXXXX", error);
  if (! tmpdir)
    goto out;

  argv = g_ptr_array_new ();
  g_ptr_array_add (argv, (gpointer) executable);
  g_ptr_array_add (argv, "convert");
  g_ptr_array_add (argv, (gpointer) filename);
  g_ptr_array_add (argv, "--output-dir");
  g_ptr_array_add (argv, tmpdir);
  g_ptr_array_add (argv, "--device");
  g_ptr_array_add (argv, (gpointer) (device && *device ? device : "auto"));
  g_ptr_array_add (argv, "--denoise");
  g_ptr_array_add (argv, settings->denoise);
  g_ptr_array_add (argv, "--lens");
  g_ptr_array_add (argv, (gpointer) settings->lens);
  if (profile && *profile)
    {
      g_ptr_array_add (argv, "--profile");
      g_ptr_array_add (argv, (gpointer) profile);
    }
  g_ptr_array_add (argv, "--overwrite");
  g_ptr_array_add (argv, "--quiet");
  g_ptr_array_add (argv, "--json");
  g_ptr_array_add (argv, NULL);

  gimp_progress_init_printf ("Developing '%s' with raw2rgb", basename);

  /* An argument vector, no shell: file names need no quoting. */
  if (! g_spawn_sync (NULL, (gchar **) argv->pdata, NULL, G_SPAWN_SEARCH_PATH,
                      NULL, NULL, &output, &errors, &status, &spawn_error))
    {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_NOENT,
                   "raw2rgb: cannot run %s (%s) — run `raw2rgb install gimp2` again "
                   "or set RAW2RGB_EXECUTABLE",
                   executable, spawn_error->message);
      g_clear_error (&spawn_error);
      g_ptr_array_free (argv, TRUE);
      goto out;
    }
  g_ptr_array_free (argv, TRUE);

  /* The summary, not the exit status, says what became of the file; without one (no converter,
   * a bad profile) the converter's last line on stderr says why. */
  if (! read_summary (output, output ? strlen (output) : 0, &report) ||
      ! report.status || ! report.output || ! *report.output ||
      (strcmp (report.status, "converted") != 0 && strcmp (report.status, "skipped") != 0))
    {
      gchar *reason = NULL;

      if (report.error)
        reason = g_strstrip (g_strdup (report.error));
      if (! reason || ! *reason)
        {
          g_free (reason);
          reason = last_line (errors);
        }
#if GLIB_CHECK_VERSION (2, 70, 0)
      if (! reason && g_spawn_check_wait_status (status, NULL))
#else
      if (! reason && g_spawn_check_exit_status (status, NULL))
#endif
        g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_FAILED,
                     "raw2rgb reported success but wrote no TIFF for %s", basename);
      else
        g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_FAILED,
                     "raw2rgb could not convert %s: %s", basename,
                     reason ? reason : "the converter failed without a message");
      g_free (reason);
      goto out;
    }

  image = gimp_file_load (GIMP_RUN_NONINTERACTIVE, report.output, report.output);
  if (image == -1)
    {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_FAILED,
                   "raw2rgb converted %s, but GIMP could not open the TIFF it wrote", basename);
      goto out;
    }
  gimp_image_set_filename (image, filename);
  gimp_progress_update (1.0);

out:
  if (tmpdir)
    remove_folder (tmpdir);
  file_report_clear (&report);
  g_free (tmpdir);
  g_free (output);
  g_free (errors);
  g_free (basename);
  return image;
}

/*
 * The settings of a call of procedure `name`: FALSE for a call this plug-in does not know (too few
 * arguments); TRUE otherwise, with settings->denoise NULL and `error` set for an invalid setting.
 */
static gboolean
settings_of_call (const gchar      *name,
                  gint              nparams,
                  const GimpParam  *param,
                  Settings         *settings,
                  GError          **error)
{
  if (strcmp (name, OPEN2_PROC) == 0 && nparams >= 6)
    {
      settings->profile = param[2].data.d_string;
      settings->device  = param[3].data.d_string;
      settings->denoise = denoise_given (param[4].data.d_float, error);
      settings->lens    = LENS_MODES[param[5].data.d_int32 ? 0 : 1];
      return TRUE;
    }
  if (strcmp (name, LOAD_PROC) == 0 && nparams >= 2)
    {
      settings->profile = setting ("RAW2RGB_PROFILE", RAW2RGB_RECORDED_PROFILE);
      settings->device  = setting ("RAW2RGB_DEVICE", RAW2RGB_RECORDED_DEVICE);
    }
  else if (strcmp (name, OPEN_PROC) == 0 && nparams >= 4)
    {
      settings->profile = param[2].data.d_string;
      settings->device  = param[3].data.d_string;
    }
  else
    {
      return FALSE;
    }
  settings->lens = lens_from_environment (error);
  if (settings->lens)
    settings->denoise = denoise_argument (error);
  return TRUE;
}

static void
run (const gchar      *name,
     gint              nparams,
     const GimpParam  *param,
     gint             *nreturn_vals,
     GimpParam       **return_vals)
{
  static GimpParam  values[2];
  GError           *error    = NULL;
  Settings          settings = { NULL, NULL, NULL, NULL };
  gint32            image    = -1;

  *nreturn_vals = 1;
  *return_vals  = values;
  values[0].type          = GIMP_PDB_STATUS;
  values[0].data.d_status = GIMP_PDB_CALLING_ERROR;

  if (! settings_of_call (name, nparams, param, &settings, &error))
    return;

  if (settings.denoise)
    image = load_with_raw2rgb (param[1].data.d_string, &settings, &error);
  g_free (settings.denoise);
  if (image != -1)
    {
      *nreturn_vals = 2;
      values[0].data.d_status = GIMP_PDB_SUCCESS;
      values[1].type          = GIMP_PDB_IMAGE;
      values[1].data.d_image  = image;
    }
  else
    {
      *nreturn_vals = 2;
      values[0].data.d_status = GIMP_PDB_EXECUTION_ERROR;
      values[1].type          = GIMP_PDB_STRING;
      values[1].data.d_string = error ? error->message : "raw2rgb failed";
    }
}
