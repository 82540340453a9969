using System.Buffers.Binary;

namespace Appliance.Paxos.Encoding;

/// <summary>Reads what <see cref="PaxosWriter"/> wrote, checking every length against the input: a short or hostile
/// buffer raises <see cref="PaxosFormatException"/>, never an out-of-range read or a huge allocation.</summary>
internal ref struct PaxosReader(ReadOnlySpan<byte> input)
{
    private readonly ReadOnlySpan<byte> _input = input;
    private int _pos;

    public readonly int Consumed => _pos;

    public readonly int Remaining => _input.Length - _pos;

    private ReadOnlySpan<byte> Take(int n)
    {
        if (n < 0 || n > _input.Length - _pos)
        {
            throw new PaxosFormatException($"truncated: need {n} bytes at offset {_pos}, have {_input.Length - _pos}");
        }
        var s = _input.Slice(_pos, n);
        _pos += n;
        return s;
    }

    public byte U8() => Take(1)[0];

    public int I32() => BinaryPrimitives.ReadInt32LittleEndian(Take(4));

    public long I64() => BinaryPrimitives.ReadInt64LittleEndian(Take(8));

    public byte[] Bytes() => Take(I32()).ToArray();

    /// <summary>Reads a count and checks it is plausible: each item needs at least <paramref name="minItemSize"/>
    /// bytes of what is left, so a forged count cannot make us allocate more than the input.</summary>
    public int Count(int minItemSize)
    {
        var n = I32();
        if (n < 0 || (long)n * minItemSize > Remaining)
        {
            throw new PaxosFormatException($"implausible count {n} with {Remaining} bytes left");
        }
        return n;
    }
}
