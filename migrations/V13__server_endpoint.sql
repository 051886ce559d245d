-- Where an `http` server answers MCP while it runs, from its ServerEndpointPublished
-- event; cleared when it stops or fails.
ALTER TABLE servers ADD COLUMN endpoint text;
