using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Appliance.Bench.Erasure;

/// <summary>Which of ISA-L's implementations: its portable C, its AVX2 one, or the one its dispatcher picks.</summary>
internal enum IsaLVariant
{
    Base,
    Avx2,
    Best,
}

/// <summary>
/// One K+M code in ISA-L, set up as its own examples do: gf_gen_cauchy1_matrix, ec_init_tables, and for decoding the
/// inverse of the first K surviving rows (gf_invert_matrix) expanded into tables once, so a timed decode is only
/// ec_encode_data, as our timed Reconstruct is only the region loop (its matrix comes from the cache).
/// </summary>
internal sealed unsafe class IsaLCode : IDisposable
{
    private readonly int _k;
    private readonly int _m;
    private readonly int _len;
    private readonly int[] _lost;
    private readonly byte* _encodeTables;
    private readonly byte* _decodeTables;
    private readonly byte** _data;
    private readonly byte** _coding;
    private readonly byte** _survivors;
    private readonly byte** _recovered;
    private readonly byte[][] _parity;
    private readonly byte[][] _rebuilt;

    /// <summary>Sets up K=<paramref name="k"/> + M=<paramref name="m"/> over the K pinned <paramref name="data"/>
    /// chunks of <paramref name="len"/> bytes; the decode rebuilds the data chunks in <paramref name="lost"/>.</summary>
    public IsaLCode(int k, int m, int len, byte[][] data, int[] lost)
    {
        (_k, _m, _len, _lost) = (k, m, len, lost);
        var rows = k + m;
        var matrix = (byte*)NativeMemory.Alloc((nuint)(rows * k));
        IsaL.gf_gen_cauchy1_matrix(matrix, rows, k);
        _encodeTables = (byte*)NativeMemory.Alloc((nuint)(k * m * 32));
        IsaL.ec_init_tables(k, m, matrix + (k * k), _encodeTables);

        _parity = [.. Enumerable.Range(0, m).Select(_ => GC.AllocateArray<byte>(len, pinned: true))];
        _rebuilt = [.. lost.Select(_ => GC.AllocateArray<byte>(len, pinned: true))];
        _data = Pointers(data);
        _coding = Pointers(_parity);
        _recovered = Pointers(_rebuilt);

        // Survivors: the first K chunks not lost (data first), as our codec picks them.
        var survivors = Enumerable.Range(0, rows).Where(i => !lost.Contains(i)).Take(k).ToArray();
        _survivors = (byte**)NativeMemory.Alloc((nuint)(k * sizeof(byte*)));
        var sub = (byte*)NativeMemory.Alloc((nuint)(k * k));
        var inverse = (byte*)NativeMemory.Alloc((nuint)(k * k));
        for (var i = 0; i < k; i++)
        {
            _survivors[i] = survivors[i] < k ? _data[survivors[i]] : _coding[survivors[i] - k];
            for (var j = 0; j < k; j++)
            {
                sub[(i * k) + j] = matrix[(survivors[i] * k) + j];
            }
        }
        if (IsaL.gf_invert_matrix(sub, inverse, k) != 0)
        {
            throw new InvalidOperationException("ISA-L found the surviving rows singular");
        }
        var decode = (byte*)NativeMemory.Alloc((nuint)(lost.Length * k));
        for (var e = 0; e < lost.Length; e++)
        {
            for (var j = 0; j < k; j++)
            {
                decode[(e * k) + j] = inverse[(lost[e] * k) + j];
            }
        }
        _decodeTables = (byte*)NativeMemory.Alloc((nuint)(k * lost.Length * 32));
        IsaL.ec_init_tables(k, lost.Length, decode, _decodeTables);
        NativeMemory.Free(matrix);
        NativeMemory.Free(sub);
        NativeMemory.Free(inverse);
        NativeMemory.Free(decode);
    }

    /// <summary>Encodes with ISA-L's variant <paramref name="variant"/>.</summary>
    public void Encode(IsaLVariant variant) => Run(variant, _m, _encodeTables, _data, _coding);

    /// <summary>Rebuilds the lost data chunks into buffers of its own (the survivors include parity from the last
    /// <see cref="Encode"/>).</summary>
    public void Decode(IsaLVariant variant) => Run(variant, _lost.Length, _decodeTables, _survivors, _recovered);

    private void Run(IsaLVariant variant, int rows, byte* tables, byte** sources, byte** targets)
    {
        switch (variant)
        {
            case IsaLVariant.Base:
                IsaL.ec_encode_data_base(_len, _k, rows, tables, sources, targets);
                break;
            case IsaLVariant.Avx2:
                IsaL.ec_encode_data_avx2(_len, _k, rows, tables, sources, targets);
                break;
            default:
                IsaL.ec_encode_data(_len, _k, rows, tables, sources, targets);
                break;
        }
    }

    /// <summary>Whether ISA-L's parity equals <paramref name="ourParity"/> and its rebuilt chunks the originals.</summary>
    public bool Agrees(byte[][] ourParity, byte[][] data, out string why)
    {
        for (var p = 0; p < _m; p++)
        {
            if (!_parity[p].AsSpan().SequenceEqual(ourParity[p]))
            {
                why = $"ISA-L's parity chunk {p} differs from ours";
                return false;
            }
        }
        for (var e = 0; e < _lost.Length; e++)
        {
            if (!_rebuilt[e].AsSpan().SequenceEqual(data[_lost[e]]))
            {
                why = $"ISA-L's rebuilt chunk {_lost[e]} differs from the original";
                return false;
            }
        }
        why = "";
        return true;
    }

    public void Dispose()
    {
        NativeMemory.Free(_encodeTables);
        NativeMemory.Free(_decodeTables);
        NativeMemory.Free(_data);
        NativeMemory.Free(_coding);
        NativeMemory.Free(_survivors);
        NativeMemory.Free(_recovered);
    }

    private static byte** Pointers(byte[][] buffers)
    {
        var p = (byte**)NativeMemory.Alloc((nuint)(buffers.Length * sizeof(byte*)));
        for (var i = 0; i < buffers.Length; i++)
        {
            p[i] = (byte*)Unsafe.AsPointer(ref buffers[i][0]);
        }
        return p;
    }
}
