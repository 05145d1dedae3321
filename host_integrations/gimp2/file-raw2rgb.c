/*
 * file-raw2rgb: open camera RAW files in GIMP 2.10 through raw2rgb (neural RAW development).
 *
 * Copyright (c) the raw2rgb developers. MIT licence.
 *
 * GIMP 2.10 has no Python, and Script-Fu cannot start programs, so this small C plug-in does it:
 * it runs `raw2rgb convert` into a temporary folder, opens the 16-bit TIFF it writes (with its
 * ICC profile and EXIF) through GIMP's TIFF loader, names the image after the RAW and removes
 * the temporary files.
 *
 * Procedures
 *   file-raw2rgb-raw-load  the RAW loader (pick it under Edit > Preferences > Image Import & Export >
 *                          Raw Image Importer); profile and device come from the environment
 *                          (RAW2RGB_PROFILE, RAW2RGB_DEVICE) or from `raw2rgb install gimp2`
 *   plug-in-raw2rgb-open   the same with explicit profile and device, for batch use
 *
 * Build and install: `raw2rgb install gimp2` (it records the raw2rgb executable, profile and
 * device through a generated header passed with -include). By hand:
 *   gcc -O2 -o file-raw2rgb file-raw2rgb.c $(gimptool-2.0 --cflags-noui --libs-noui)
 */

#include <string.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <libgimp/gimp.h>

#define LOAD_PROC "file-raw2rgb-raw-load"
#define OPEN_PROC "plug-in-raw2rgb-open"
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
  static const GimpParamDef image_return[] =
  {
    { GIMP_PDB_IMAGE, "image", "The 16-bit image raw2rgb developed" },
  };

  gimp_install_procedure (LOAD_PROC,
                          "Open a camera RAW file developed by raw2rgb (neural RAW-to-RGB)",
                          "Runs `raw2rgb convert` on the RAW file and opens the 16-bit TIFF "
                          "it writes, with its ICC profile and EXIF. The profile and device "
                          "come from RAW2RGB_PROFILE and RAW2RGB_DEVICE, else from the "
                          "values `raw2rgb install gimp2` recorded, else raw2rgb's defaults.",
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
                          "Batch form of " LOAD_PROC ": the profile and device are arguments.",
                          "raw2rgb developers",
                          "raw2rgb developers (MIT)",
                          "2025",
                          NULL,
                          NULL,
                          GIMP_PLUGIN,
                          G_N_ELEMENTS (open_args),
                          G_N_ELEMENTS (image_return),
                          open_args, image_return);
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

/* `name` without its last extension. */
static gchar *
stem_of (const gchar *filename)
{
  gchar *base = g_path_get_basename (filename);
  gchar *dot  = strrchr (base, '.');

  if (dot && dot != base)
    *dot = '\0';
  return base;
}

static gint32
load_with_raw2rgb (const gchar  *filename,
                   const gchar  *profile,
                   const gchar  *device,
                   GError      **error)
{
  const gchar *executable = setting ("RAW2RGB_EXECUTABLE", RAW2RGB_RECORDED_EXECUTABLE);
  gchar       *basename   = g_path_get_basename (filename);
  gchar       *stem       = stem_of (filename);
  gchar       *tmpdir     = NULL;
  gchar       *tiff       = NULL;
  gchar       *errors     = NULL;
  gint         status     = 0;
  gint32       image      = -1;
  GError      *spawn_error = NULL;
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
  if (profile && *profile)
    {
      g_ptr_array_add (argv, "--profile");
      g_ptr_array_add (argv, (gpointer) profile);
    }
  g_ptr_array_add (argv, "--overwrite");
  g_ptr_array_add (argv, "--quiet");
  g_ptr_array_add (argv, NULL);

  gimp_progress_init_printf ("Developing '%s' with raw2rgb", basename);

  /* An argument vector, no shell: file names need no quoting. */
  if (! g_spawn_sync (NULL, (gchar **) argv->pdata, NULL,
                      G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL,
                      NULL, NULL, NULL, &errors, &status, &spawn_error))
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

#if GLIB_CHECK_VERSION (2, 70, 0)
  if (! g_spawn_check_wait_status (status, NULL))
#else
  if (! g_spawn_check_exit_status (status, NULL))
#endif
    {
      gchar *reason = last_line (errors);

      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_FAILED,
                   "raw2rgb could not convert %s: %s", basename,
                   reason ? reason : "the converter failed without a message");
      g_free (reason);
      goto out;
    }

  tiff = g_strdup_printf ("%s%s%s.tif", tmpdir, G_DIR_SEPARATOR_S, stem);
  image = gimp_file_load (GIMP_RUN_NONINTERACTIVE, tiff, tiff);
  if (image == -1)
    {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_FAILED,
                   "raw2rgb converted %s, but GIMP could not open the TIFF it wrote", basename);
      goto out;
    }
  gimp_image_set_filename (image, filename);
  gimp_progress_update (1.0);

out:
  if (tiff)
    g_unlink (tiff);
  if (tmpdir)
    g_rmdir (tmpdir);
  g_free (tiff);
  g_free (tmpdir);
  g_free (errors);
  g_free (stem);
  g_free (basename);
  return image;
}

static void
run (const gchar      *name,
     gint              nparams,
     const GimpParam  *param,
     gint             *nreturn_vals,
     GimpParam       **return_vals)
{
  static GimpParam  values[2];
  GError           *error   = NULL;
  const gchar      *profile = NULL;
  const gchar      *device  = NULL;
  gint32            image   = -1;

  *nreturn_vals = 1;
  *return_vals  = values;
  values[0].type          = GIMP_PDB_STATUS;
  values[0].data.d_status = GIMP_PDB_CALLING_ERROR;

  if (strcmp (name, LOAD_PROC) == 0 && nparams >= 2)
    {
      profile = setting ("RAW2RGB_PROFILE", RAW2RGB_RECORDED_PROFILE);
      device  = setting ("RAW2RGB_DEVICE", RAW2RGB_RECORDED_DEVICE);
    }
  else if (strcmp (name, OPEN_PROC) == 0 && nparams >= 4)
    {
      profile = param[2].data.d_string;
      device  = param[3].data.d_string;
    }
  else
    {
      return;
    }

  image = load_with_raw2rgb (param[1].data.d_string, profile, device, &error);
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
