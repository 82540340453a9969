using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Appliance.Bench.Erasure;

/// <summary>
/// ISA-L's erasure code (Debian's libisal2), the reference for `bench erasure`. The platform layer owns every native
/// call of the product; this benchmark declares its own because the reference library is a bench-only dependency
/// that the product never loads. The C names are kept.
/// </summary>
internal static unsafe partial class IsaL
{
    private const string Library = "libisal.so.2";

    /// <summary>Loads libisal, installing libisal2 from Debian once when it is missing; null when it loads, else why
    /// not.</summary>
    public static string? TryLoad()
    {
        if (NativeLibrary.TryLoad(Library, out _))
        {
            return null;
        }
        Console.WriteLine("erasure: libisal.so.2 is missing; trying `apt-get install -y libisal2`");
        try
        {
            using var p = Process.Start(new ProcessStartInfo("apt-get", "install -y libisal2") { RedirectStandardOutput = true, RedirectStandardError = true })!;
            p.StandardOutput.ReadToEnd();
            var err = p.StandardError.ReadToEnd();
            p.WaitForExit();
            if (p.ExitCode != 0)
            {
                return $"apt-get install libisal2 failed ({p.ExitCode}): {err.Trim()}";
            }
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return $"apt-get could not run: {e.Message}";
        }
        return NativeLibrary.TryLoad(Library, out _) ? null : "libisal2 was installed but libisal.so.2 still does not load";
    }

    [LibraryImport(Library)]
    public static partial void gf_gen_cauchy1_matrix(byte* a, int m, int k);

    [LibraryImport(Library)]
    public static partial int gf_invert_matrix(byte* input, byte* output, int n);

    [LibraryImport(Library)]
    public static partial void ec_init_tables(int k, int rows, byte* a, byte* gftbls);

    /// <summary>ISA-L's dispatcher: its fastest variant for this CPU (2.30, Debian 12's, has no GFNI variant: on
    /// AVX-512 machines this is ec_encode_data_avx512, VPSHUFB on 512 bits).</summary>
    [LibraryImport(Library)]
    public static partial void ec_encode_data(int len, int k, int rows, byte* gftbls, byte** data, byte** coding);

    [LibraryImport(Library)]
    public static partial void ec_encode_data_avx2(int len, int k, int rows, byte* gftbls, byte** data, byte** coding);

    [LibraryImport(Library)]
    public static partial void ec_encode_data_base(int len, int k, int rows, byte* gftbls, byte** data, byte** coding);
}
