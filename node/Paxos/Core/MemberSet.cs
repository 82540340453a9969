namespace Appliance.Paxos.Core;

/// <summary>An immutable, sorted set of member ids (one configuration of the replicated log).</summary>
public sealed class MemberSet : IEquatable<MemberSet>
{
    private readonly int[] _ids;

    public MemberSet(IEnumerable<int> ids)
    {
        _ids = ids.Distinct().Order().ToArray();
    }

    public static MemberSet Empty { get; } = new([]);

    public IReadOnlyList<int> Ids => _ids;

    public int Count => _ids.Length;

    /// <summary>The smallest number of members that is a majority.</summary>
    public int Majority => _ids.Length / 2 + 1;

    public bool Contains(int id) => Array.BinarySearch(_ids, id) >= 0;

    /// <summary>True when <paramref name="voters"/> holds a majority of this set (an empty set has no majority).</summary>
    public bool IsQuorum(IEnumerable<int> voters)
    {
        if (_ids.Length == 0)
        {
            return false;
        }
        var n = 0;
        foreach (var v in voters)
        {
            if (Contains(v))
            {
                n++;
            }
        }
        return n >= Majority;
    }

    public MemberSet With(int id) => new(_ids.Append(id));

    public MemberSet Without(int id) => new(_ids.Where(x => x != id));

    /// <summary>How many members are in one set and not the other (both ways).</summary>
    public int Distance(MemberSet other) => _ids.Except(other._ids).Count() + other._ids.Except(_ids).Count();

    public bool Equals(MemberSet? other) => other is not null && _ids.AsSpan().SequenceEqual(other._ids);

    public override bool Equals(object? obj) => Equals(obj as MemberSet);

    public override int GetHashCode()
    {
        var h = new HashCode();
        foreach (var id in _ids)
        {
            h.Add(id);
        }
        return h.ToHashCode();
    }

    public override string ToString() => "{" + string.Join(",", _ids) + "}";
}
