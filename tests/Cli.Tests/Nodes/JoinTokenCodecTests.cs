using Appliance.Cli.Commands;
using Appliance.Cli.Common;
using Appliance.Maps.Client;
using Appliance.Wire.Auth;

namespace Appliance.Cli.Tests.Nodes;

/// <summary>The join token's text: what `join-token` prints decodes to the same conf, node and secret; anything else
/// is refused as invalid input (exit 4) before a monitor is asked.</summary>
public sealed class JoinTokenCodecTests
{
    private static readonly ClusterConf Conf = new(Guid.NewGuid(), 1_796_000_000_000, [("n1", "10.0.0.1:6789"), ("n2", "10.0.0.2:6789")], ["n1"]);

    [Fact]
    public void A_token_round_trips_and_is_one_line_of_url_safe_text()
    {
        var secret = Secret.Generate();
        var text = new JoinToken(Conf, "n3", secret).Encode();
        Assert.StartsWith("aplj1.", text);
        Assert.Matches("^aplj1\\.[A-Za-z0-9_-]+$", text);
        var back = JoinToken.Decode("  " + text + "\n");
        Assert.Equal(Conf.Format(), back.Conf.Format());
        Assert.Equal("n3", back.Node);
        Assert.Equal(secret, back.Secret);
    }

    [Theory]
    [InlineData("")]
    [InlineData("aplj2.AAAA")]
    [InlineData("aplj1.")]
    [InlineData("aplj1.!!!!")]
    public void Anything_else_is_invalid_input(string text)
    {
        var e = Assert.Throws<CliException>(() => JoinToken.Decode(text));
        Assert.Equal(ExitCodes.InvalidInput, e.ExitCode);
        Assert.Contains("not a join token", e.Message);
    }

    [Fact]
    public void A_truncated_token_is_invalid_input()
    {
        var text = new JoinToken(Conf, "n3", Secret.Generate()).Encode();
        for (var cut = "aplj1.".Length + 1; cut < text.Length; cut += 7)
        {
            var e = Assert.Throws<CliException>(() => JoinToken.Decode(text[..cut]));
            Assert.Equal(ExitCodes.InvalidInput, e.ExitCode);
        }
    }
}
