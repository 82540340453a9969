namespace Appliance.Paxos.Core;

/// <summary>
/// A Paxos ballot: (round, node id), ordered by round then node id, so two candidates never share a ballot.
/// <see cref="Zero"/> is below every ballot a node can issue (rounds start at 1).
/// </summary>
public readonly record struct Ballot(long Round, int Node) : IComparable<Ballot>
{
    public static readonly Ballot Zero = new(0, 0);

    public int CompareTo(Ballot other)
    {
        var c = Round.CompareTo(other.Round);
        return c != 0 ? c : Node.CompareTo(other.Node);
    }

    public static bool operator <(Ballot a, Ballot b) => a.CompareTo(b) < 0;

    public static bool operator >(Ballot a, Ballot b) => a.CompareTo(b) > 0;

    public static bool operator <=(Ballot a, Ballot b) => a.CompareTo(b) <= 0;

    public static bool operator >=(Ballot a, Ballot b) => a.CompareTo(b) >= 0;

    public override string ToString() => $"{Round}.{Node}";
}
