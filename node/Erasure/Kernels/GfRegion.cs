using System.Runtime.CompilerServices;
using Appliance.Erasure.Field;

namespace Appliance.Erasure.Kernels;

/// <summary>
/// The hot loop: outputs[r] = (outputs[r] +) sum over c of M[r][c] * inputs[c], byte by byte, for a region of
/// <c>len</c> bytes. The vector kernels keep up to <see cref="MaxGroup"/> outputs in registers and pass once over
/// the inputs for them, as ISA-L and klauspost/reedsolomon do; work goes in blocks of <see cref="BlockBytes"/> so
/// a second group of outputs re-reads its inputs from cache, not memory. The bytes past the last whole vector go
/// through the portable loop.
/// </summary>
internal static unsafe partial class GfRegion
{
    /// <summary>Outputs computed per pass over the inputs.</summary>
    public const int MaxGroup = 4;

    /// <summary>Bytes per block of the outer loop (a multiple of every vector width).</summary>
    public const int BlockBytes = 32 * 1024;

    /// <summary>Runs <paramref name="m"/> (one row per output, one column per input) over the first
    /// <paramref name="len"/> bytes of each region in <paramref name="inputs"/> and <paramref name="outputs"/> with
    /// <paramref name="kernel"/>; <paramref name="accumulate"/> adds into the outputs instead of overwriting them.</summary>
    public static void Apply(GfKernel kernel, CodingMatrix m, byte** inputs, byte** outputs, nuint len, bool accumulate)
    {
        if (len == 0)
        {
            return;
        }
        nuint width = kernel switch
        {
            GfKernel.Avx2 => 64,
            GfKernel.Gfni256 => 32,
            GfKernel.Gfni512 => 64,
            _ => 0,
        };
        var vectorLen = width == 0 ? 0 : len & ~(width - 1);
        for (nuint block = 0; block < vectorLen; block += BlockBytes)
        {
            var end = Math.Min(vectorLen, block + BlockBytes);
            for (var g = 0; g < m.Rows; g += MaxGroup)
            {
                var n = Math.Min(MaxGroup, m.Rows - g);
                if (accumulate)
                {
                    Group<Add>(kernel, m, g, n, inputs, outputs + g, block, end);
                }
                else
                {
                    Group<Set>(kernel, m, g, n, inputs, outputs + g, block, end);
                }
            }
        }
        if (vectorLen < len)
        {
            Portable(m, inputs, outputs, vectorLen, len, accumulate);
        }
    }

    private static void Group<TAcc>(GfKernel kernel, CodingMatrix m, int firstRow, int n, byte** inputs, byte** outputs, nuint start, nuint end)
        where TAcc : struct, IFlag
    {
        var first = firstRow * m.Cols;
        switch (kernel)
        {
            case GfKernel.Avx2:
                fixed (byte* t = &m.NibbleTables[first * 64])
                {
                    switch (n)
                    {
                        case 1: Avx2Group<N1, TAcc>(t, m.Cols, inputs, outputs, start, end); break;
                        case 2: Avx2Group<N2, TAcc>(t, m.Cols, inputs, outputs, start, end); break;
                        case 3: Avx2Group<N3, TAcc>(t, m.Cols, inputs, outputs, start, end); break;
                        default: Avx2Group<N4, TAcc>(t, m.Cols, inputs, outputs, start, end); break;
                    }
                }
                break;
            case GfKernel.Gfni256:
                fixed (ulong* a = &m.AffineMatrices[first])
                {
                    switch (n)
                    {
                        case 1: Gfni256Group<N1, TAcc>(a, m.Cols, inputs, outputs, start, end); break;
                        case 2: Gfni256Group<N2, TAcc>(a, m.Cols, inputs, outputs, start, end); break;
                        case 3: Gfni256Group<N3, TAcc>(a, m.Cols, inputs, outputs, start, end); break;
                        default: Gfni256Group<N4, TAcc>(a, m.Cols, inputs, outputs, start, end); break;
                    }
                }
                break;
            case GfKernel.Gfni512:
                fixed (ulong* a = &m.AffineMatrices[first])
                {
                    switch (n)
                    {
                        case 1: Gfni512Group<N1, TAcc>(a, m.Cols, inputs, outputs, start, end); break;
                        case 2: Gfni512Group<N2, TAcc>(a, m.Cols, inputs, outputs, start, end); break;
                        case 3: Gfni512Group<N3, TAcc>(a, m.Cols, inputs, outputs, start, end); break;
                        default: Gfni512Group<N4, TAcc>(a, m.Cols, inputs, outputs, start, end); break;
                    }
                }
                break;
            default:
                throw new InvalidOperationException($"kernel {kernel} has no vector loop");
        }
    }

    /// <summary>The portable loop over [start, end): per output and input, eight product-table lookups per step.</summary>
    public static void Portable(CodingMatrix m, byte** inputs, byte** outputs, nuint start, nuint end, bool accumulate)
    {
        fixed (byte* table = Gf256.MulTable)
        {
            for (var r = 0; r < m.Rows; r++)
            {
                var output = outputs[r];
                for (var c = 0; c < m.Cols; c++)
                {
                    var row = table + (m.Coefs[(r * m.Cols) + c] << 8);
                    var input = inputs[c];
                    var set = c == 0 && !accumulate;
                    var i = start;
                    for (; i + 8 <= end; i += 8)
                    {
                        var v = Unsafe.ReadUnaligned<ulong>(input + i);
                        var p = row[(byte)v]
                            | ((ulong)row[(byte)(v >> 8)] << 8)
                            | ((ulong)row[(byte)(v >> 16)] << 16)
                            | ((ulong)row[(byte)(v >> 24)] << 24)
                            | ((ulong)row[(byte)(v >> 32)] << 32)
                            | ((ulong)row[(byte)(v >> 40)] << 40)
                            | ((ulong)row[(byte)(v >> 48)] << 48)
                            | ((ulong)row[(byte)(v >> 56)] << 56);
                        if (!set)
                        {
                            p ^= Unsafe.ReadUnaligned<ulong>(output + i);
                        }
                        Unsafe.WriteUnaligned(output + i, p);
                    }
                    for (; i < end; i++)
                    {
                        output[i] = set ? row[input[i]] : (byte)(output[i] ^ row[input[i]]);
                    }
                }
            }
        }
    }

    // Compile-time constants for the generic kernels: the JIT specializes a generic method per struct type argument,
    // so `if (TN.Value > 1)` and `if (TAcc.Value)` vanish from the loop instead of being tested per vector.
    internal interface ICount
    {
        static abstract int Value { get; }
    }

    internal interface IFlag
    {
        static abstract bool Value { get; }
    }

    private readonly struct N1 : ICount { public static int Value => 1; }

    private readonly struct N2 : ICount { public static int Value => 2; }

    private readonly struct N3 : ICount { public static int Value => 3; }

    private readonly struct N4 : ICount { public static int Value => 4; }

    private readonly struct Add : IFlag { public static bool Value => true; }

    private readonly struct Set : IFlag { public static bool Value => false; }
}
