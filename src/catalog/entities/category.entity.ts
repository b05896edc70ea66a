import { Check, Column, CreateDateColumn, Entity, Index, PrimaryGeneratedColumn } from 'typeorm';

/** The `categories` table (migrations/1763800001000-Catalog.ts): navigation and listing filters. */
@Entity('categories')
@Index('categories_slug_key', ['slug'], { unique: true })
@Check('categories_name_check', `length(name) BETWEEN 1 AND 200`)
@Check('categories_slug_check', `slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$'`)
export class CategoryEntity {
  @PrimaryGeneratedColumn('uuid', { primaryKeyConstraintName: 'categories_pkey' })
  id!: string;

  @Column('text')
  name!: string;

  @Column('text')
  slug!: string;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;
}
