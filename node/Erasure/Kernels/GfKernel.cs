using System.Runtime.Intrinsics.X86;

namespace Appliance.Erasure.Kernels;

/// <summary>The implementations of the region loop (multiply-accumulate a region by constants in GF(2^8)).</summary>
public enum GfKernel
{
    /// <summary>Plain C#: one product-table lookup per byte. Runs everywhere.</summary>
    Portable,

    /// <summary>AVX2: two 16-entry nibble tables per constant, looked up 32 bytes at a time with VPSHUFB.</summary>
    Avx2,

    /// <summary>GFNI on 256-bit vectors: one GF2P8AFFINEQB per constant and 32 bytes (an 8x8 bit matrix per constant).</summary>
    Gfni256,

    /// <summary>GFNI on 512-bit vectors (AVX-512): one GF2P8AFFINEQB per constant and 64 bytes.</summary>
    Gfni512,
}

/// <summary>Which kernels this CPU runs, and the fastest of them.</summary>
public static class GfKernels
{
    private static readonly GfKernel[] SupportedKernels = [.. Enum.GetValues<GfKernel>().Where(IsSupported)];

    /// <summary>The kernels this CPU supports, slowest first.</summary>
    public static IReadOnlyList<GfKernel> Supported => SupportedKernels;

    /// <summary>The fastest kernel this CPU supports, chosen once at start-up.</summary>
    public static GfKernel Best { get; } = SupportedKernels[^1];

    /// <summary>Whether this CPU (and runtime) can run <paramref name="kernel"/>.</summary>
    public static bool IsSupported(GfKernel kernel) => kernel switch
    {
        GfKernel.Portable => true,
        GfKernel.Avx2 => Avx2.IsSupported,
        GfKernel.Gfni256 => Gfni.V256.IsSupported,
        GfKernel.Gfni512 => Gfni.V512.IsSupported,
        _ => false,
    };
}
