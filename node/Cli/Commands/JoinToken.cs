using Appliance.Cli.Common;
using Appliance.Maps.Client;
using Appliance.Wire.Auth;
using Appliance.Wire.Codec;

namespace Appliance.Cli.Commands;

/// <summary>
/// What `appliance join-token NAME` prints and `appliance join TOKEN` reads: the cluster's conf as the member that
/// made it had it (fsid, creation, monitors), the node's name and the token's secret (the key of entity
/// client.join.NAME, which the monitors recorded with its expiry). Text: "aplj1." and the bytes in base64url
/// (versioned struct: conf text, node name, secret).
/// </summary>
public sealed record JoinToken(ClusterConf Conf, string Node, Secret Secret)
{
    private const string Prefix = "aplj1.";
    private const byte Version = 1;

    public string Encode()
    {
        using var w = new WireWriter();
        var m = w.BeginStruct(Version, 1);
        w.WriteString(Conf.Format());
        w.WriteString(Node);
        w.WriteString(Secret.ToBase64());
        w.EndStruct(m);
        return Prefix + Convert.ToBase64String(w.WrittenSpan).TrimEnd('=').Replace('+', '-').Replace('/', '_');
    }

    public static JoinToken Decode(string text)
    {
        var t = text.Trim();
        if (!t.StartsWith(Prefix, StringComparison.Ordinal))
        {
            throw Bad("it does not start with " + Prefix);
        }
        try
        {
            var b64 = t[Prefix.Length..].Replace('-', '+').Replace('_', '/');
            var bytes = Convert.FromBase64String(b64.PadRight(b64.Length + ((4 - (b64.Length % 4)) % 4), '='));
            var r = new WireReader(bytes);
            var s = r.BeginStruct(Version, "join token");
            var conf = ClusterConf.Parse(r.ReadString(), "the join token's cluster.conf");
            var node = r.ReadString();
            var secret = Secret.FromBase64(r.ReadString());
            r.EndStruct(s);
            r.ExpectEnd("join token");
            return new JoinToken(conf, NodeConf.CheckName(node, "the join token's node"), secret);
        }
        catch (Exception e) when (e is FormatException or WireFormatException)
        {
            throw Bad(e.Message);
        }
    }

    private static CliException Bad(string why) =>
        new(ExitCodes.InvalidInput, $"this is not a join token ({why}); copy the whole line `appliance join-token NAME` printed on a member");

    public override string ToString() => $"join token for node {Node} of cluster {Conf.Fsid}";
}
